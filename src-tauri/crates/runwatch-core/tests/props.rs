//! Property tests for message templates: no template text makes `parse` panic, no value
//! makes `render` panic, values (braces and all) come out verbatim, and `{{` / `}}` are
//! literal braces.
//!
//! Case counts stay small for `make test`; `PROPTEST_CASES=N` raises them (`make soak`).

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::Config;
use runwatch_core::template::{Template, TemplateError, PLACEHOLDERS};

fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    Config { cases, ..Config::default() }
}

/// Template-ish text: braces, placeholders (known, unknown, spaced), escapes, other text.
fn template_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("{{".to_string()),
        Just("}}".to_string()),
        prop::sample::select(PLACEHOLDERS.to_vec()).prop_map(|p| format!("{{{p}}}")),
        prop::sample::select(PLACEHOLDERS.to_vec()).prop_map(|p| format!("{{ {p} }}")),
        Just("{run.hsh}".to_string()),
        Just("{loss:.3f}".to_string()),
        "[a-z .:❗️é]{1,6}",
        any::<String>(),
    ];
    prop::collection::vec(token, 0..12).prop_map(|t| t.concat())
}

/// Values for every placeholder, full of braces and placeholder look-alikes.
fn values() -> impl Strategy<Value = HashMap<&'static str, String>> {
    let value = prop_oneof![
        any::<String>(),
        "[{}a-z.:% ]{0,20}",
        prop::sample::select(PLACEHOLDERS.to_vec()).prop_map(|p| format!("{{{p}}} {{{{ }}")),
    ];
    prop::collection::vec(prop::option::of(value), PLACEHOLDERS.len())
        .prop_map(|vs| PLACEHOLDERS.iter().zip(vs).filter_map(|(k, v)| v.map(|v| (*k, v))).collect())
}

/// A template as pieces: literal text or a placeholder (by index).
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Field(usize),
}

fn pieces() -> impl Strategy<Value = Vec<Piece>> {
    let piece = prop_oneof![
        any::<String>().prop_map(Piece::Text),
        "[{}a-z ]{0,8}".prop_map(Piece::Text),
        (0..PLACEHOLDERS.len()).prop_map(Piece::Field),
    ];
    prop::collection::vec(piece, 0..10)
}

/// Literal text as template source: braces doubled.
fn escape(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn parse_and_render_never_panic_on_any_string(source in any::<String>(), values in values()) {
        if let Ok(t) = Template::parse(&source) {
            prop_assert_eq!(t.source(), source.as_str());
            let _ = t.render(&values);
        }
    }

    #[test]
    fn parse_and_render_never_panic_on_brace_heavy_text(source in template_text(), values in values()) {
        match Template::parse(&source) {
            Ok(t) => {
                prop_assert_eq!(t.source(), source.as_str());
                let _ = t.render(&values);
                let _ = t.render(&HashMap::new());
            }
            // Every refusal says what to fix.
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn values_come_out_verbatim_and_escapes_are_literal(pieces in pieces(), values in values()) {
        let mut source = String::new();
        let mut expected = String::new();
        for p in &pieces {
            match p {
                Piece::Text(t) => {
                    source.push_str(&escape(t));
                    expected.push_str(t);
                }
                Piece::Field(i) => {
                    let name = PLACEHOLDERS[*i];
                    source.push_str(&format!("{{{name}}}"));
                    expected.push_str(values.get(name).map_or("", String::as_str));
                }
            }
        }
        let t = Template::parse(&source).map_err(|e| TestCaseError::fail(format!("{source:?}: {e}")))?;
        prop_assert_eq!(t.render(&values), expected);
    }

    #[test]
    fn escaped_text_renders_as_itself(text in any::<String>(), values in values()) {
        let t = Template::parse(&escape(&text)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(t.render(&values), text);
    }

    #[test]
    fn a_lone_placeholder_renders_its_value_exactly(i in 0..PLACEHOLDERS.len(), value in any::<String>()) {
        let name = PLACEHOLDERS[i];
        let t = Template::parse(&format!("{{{name}}}")).unwrap();
        prop_assert_eq!(t.render(&HashMap::from([(name, value.clone())])), value);
    }

    #[test]
    fn unknown_placeholders_are_refused(name in "[a-z_.]{1,12}") {
        prop_assume!(!PLACEHOLDERS.contains(&name.as_str()));
        let refused = matches!(Template::parse(&format!("x {{{name}}} y")), Err(TemplateError::Unknown(n, _)) if n == name);
        prop_assert!(refused);
    }
}
