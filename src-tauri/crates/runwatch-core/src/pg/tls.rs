//! Encrypting the connection to a PostgreSQL store. `sslmode=require` in the URL (or
//! libpq's `verify-ca` / `verify-full`, which mean the same here) turns TLS on, and the
//! server's certificate is always checked: against the public CAs and the CA file named
//! by `sslrootcert=FILE`, and for the host name in the URL. Without it the connection is
//! plain, as before: a server's self-signed certificate (Debian's default) must not break a
//! store that worked.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use postgres::config::SslMode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What every connection to a store is made with.
pub(crate) type Tls = MakeRustlsConnect;

/// The client settings of `url` and the TLS connector they need; an error is one line
/// (the URL is never part of it: the caller names the masked one).
pub(crate) fn config(url: &str) -> Result<(postgres::Config, Tls), String> {
    let (url, root_cert, verify) = take_tls_params(url);
    let mut config = postgres::Config::from_str(&url).map_err(|e| format!("the URL is not valid ({})", super::describe(&e)))?;
    let encrypted = verify || config.get_ssl_mode() == SslMode::Require;
    if !encrypted {
        // libpq's `prefer` would try TLS and accept any certificate; this client checks
        // every certificate, so it asks for TLS only when the URL does.
        config.ssl_mode(SslMode::Disable);
    } else if verify {
        config.ssl_mode(SslMode::Require);
    }
    if root_cert.is_some() && !encrypted {
        return Err("sslrootcert is given without sslmode=require (or verify-full): say whether to encrypt".into());
    }
    Ok((config, connector(root_cert.as_deref().map(Path::new))?))
}

/// Takes out of the URL what the client library does not know: `sslrootcert` (returned)
/// and the `sslmode` values `verify-ca` / `verify-full` (true when given; `require` is put
/// in their place). Both URL parameters (`?a=b&c=d`) and `key=value` strings are read.
fn take_tls_params(url: &str) -> (String, Option<String>, bool) {
    let (head, params, sep) = match url.split_once('?') {
        Some((head, query)) if super::is_url(url) => (format!("{head}?"), query.to_string(), '&'),
        _ if super::is_url(url) => return (url.to_string(), None, false),
        _ => (String::new(), url.to_string(), ' '),
    };
    let (mut root_cert, mut verify) = (None, false);
    let mut kept = Vec::new();
    for param in params.split(sep).filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some(("sslrootcert", value)) => root_cert = Some(percent_decoded(value)),
            Some(("sslmode", "verify-ca" | "verify-full")) => {
                verify = true;
                kept.push("sslmode=require".to_string());
            }
            _ => kept.push(param.to_string()),
        }
    }
    let rest = kept.join(&sep.to_string());
    let url = if sep == '&' && rest.is_empty() { head.trim_end_matches('?').to_string() } else { format!("{head}{rest}") };
    (url, root_cert, verify)
}

/// `%2F` and the like in a URL parameter, as the bytes they stand for.
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A connector that trusts the public CAs and those in `root_cert`.
fn connector(root_cert: Option<&Path>) -> Result<Tls, String> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = root_cert {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect::<Result<_, _>>)
            .map_err(|e| format!("cannot read the CA certificates in '{}' (sslrootcert): {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("'{}' (sslrootcert) holds no PEM certificate", path.display()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("'{}' (sslrootcert) holds a certificate that cannot be used: {e}", path.display()))?;
        }
    }
    // ring, as the HTTPS side uses (no C toolchain needed for aws-lc).
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS cannot be set up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_urls_and_key_value_strings() {
        let (url, ca, verify) = take_tls_params("postgresql://a@db/rw?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&x=1");
        assert_eq!((url.as_str(), ca.as_deref(), verify), ("postgresql://a@db/rw?sslmode=require&x=1", Some("/etc/ca.pem"), true));
        let (url, ca, verify) = take_tls_params("postgresql://a@db/rw?sslrootcert=ca.pem");
        assert_eq!((url.as_str(), ca.as_deref(), verify), ("postgresql://a@db/rw", Some("ca.pem"), false));
        let (url, ca, verify) = take_tls_params("postgresql://a@db/rw");
        assert_eq!((url.as_str(), ca, verify), ("postgresql://a@db/rw", None, false));
        let (url, ca, verify) = take_tls_params("host=db sslmode=verify-ca sslrootcert=/ca.pem user=a");
        assert_eq!((url.as_str(), ca.as_deref(), verify), ("host=db sslmode=require user=a", Some("/ca.pem"), true));
    }

    #[test]
    fn tls_is_asked_for_only_when_the_url_says_so() {
        assert_eq!(config("postgresql://a@db/rw").unwrap().0.get_ssl_mode(), SslMode::Disable);
        assert_eq!(config("postgresql://a@db/rw?sslmode=prefer").unwrap().0.get_ssl_mode(), SslMode::Disable);
        assert_eq!(config("postgresql://a@db/rw?sslmode=require").unwrap().0.get_ssl_mode(), SslMode::Require);
        assert_eq!(config("postgresql://a@db/rw?sslmode=verify-full").unwrap().0.get_ssl_mode(), SslMode::Require);
        let no_mode = config("postgresql://a@db/rw?sslrootcert=ca.pem").err().unwrap();
        assert!(no_mode.contains("without sslmode=require"), "{no_mode}");
        let missing = config("postgresql://a@db/rw?sslmode=require&sslrootcert=/nonexistent/ca.pem").err().unwrap();
        assert!(missing.contains("cannot read the CA certificates in '/nonexistent/ca.pem'"), "{missing}");
    }
}
