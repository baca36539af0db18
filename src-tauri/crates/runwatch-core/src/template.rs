//! Message templates with Aim's placeholders (`{run.hash}`, `{message}`, …).
//!
//! A template is checked when it is saved, so an unknown placeholder is an error for the
//! person typing it, not a failed send later. Values are substituted in one pass and never
//! re-read, so braces inside a logged message pass through untouched (Aim's own formatter
//! crashes on them). `{{` and `}}` write literal braces.

use std::collections::HashMap;

/// Aim's default stuck-run message.
pub const AIM_STUCK_TEMPLATE: &str = "❗️ Something wrong with Run '{run.hash}'. Please check. ❗️";

/// The placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &["run.hash", "run.name", "run.repo", "message", "title", "body", "level", "host", "id"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder '{{{0}}}' in the message template; use one of {1}")]
    Unknown(String, String),
    #[error("unclosed '{{' in the message template (write '{{{{' for a literal brace)")]
    Unclosed,
    #[error("stray '}}' in the message template (write '}}}}' for a literal brace)")]
    Stray,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(&'static str),
}

/// A checked template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(TemplateError::Unclosed),
                        }
                    }
                    let field = PLACEHOLDERS.iter().find(|p| **p == name.trim()).ok_or_else(|| {
                        TemplateError::Unknown(name.clone(), PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(", "))
                    })?;
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Field(field));
                }
                '}' => return Err(TemplateError::Stray),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template { source: source.to_string(), pieces })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Fills the placeholders; a value missing from `values` renders as empty.
    pub fn render(&self, values: &HashMap<&'static str, String>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => out.push_str(values.get(f).map_or("", String::as_str)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aim_default_template_renders() {
        let t = Template::parse(AIM_STUCK_TEMPLATE).unwrap();
        let values = HashMap::from([("run.hash", "be0ebd0ce55b452d85f692cf".to_string())]);
        assert_eq!(t.render(&values), "❗️ Something wrong with Run 'be0ebd0ce55b452d85f692cf'. Please check. ❗️");
    }

    #[test]
    fn braces_in_values_pass_through_and_escapes_work() {
        let t = Template::parse("{{literal}} [{level}] {message}").unwrap();
        let values = HashMap::from([("level", "ERROR".to_string()), ("message", "loss={loss:.3f} {run.hash} }{".to_string())]);
        assert_eq!(t.render(&values), "{literal} [ERROR] loss={loss:.3f} {run.hash} }{");
    }

    #[test]
    fn bad_templates_are_rejected_with_a_reason() {
        assert!(matches!(Template::parse("hi {run.hsh}"), Err(TemplateError::Unknown(n, _)) if n == "run.hsh"));
        assert_eq!(Template::parse("hi {run.hash"), Err(TemplateError::Unclosed));
        assert_eq!(Template::parse("hi }"), Err(TemplateError::Stray));
        assert!(Template::parse("{nope}").unwrap_err().to_string().contains("{run.hash}"));
    }
}
