//! Method parameters: given by name (an object) or by position (an array), read into typed
//! values with errors that name the parameter and the problem (-32602).

use crate::jsonrpc::{truncated, RpcError};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The parameters of one call, checked against the names the method takes.
#[derive(Debug)]
pub(crate) struct Params {
    names: &'static [&'static str],
    given: Given,
}

#[derive(Debug)]
enum Given {
    Named(Map<String, Value>),
    Positional(Vec<Value>),
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "no params".to_string()
    } else {
        names.join(", ")
    }
}

impl Params {
    /// Checks `raw` holds only parameters in `names`: no unknown name (a typo would otherwise be
    /// silently ignored), no more positions than names.
    pub fn new(raw: Option<Value>, names: &'static [&'static str]) -> Result<Params, RpcError> {
        let given = match raw {
            None | Some(Value::Null) => Given::Positional(Vec::new()),
            Some(Value::Object(map)) => {
                if let Some(unknown) = map.keys().find(|k| !names.contains(&k.as_str())) {
                    return Err(RpcError::invalid_params(format!(
                        "unknown param {:?} (this method takes: {})",
                        truncated(unknown),
                        list(names)
                    )));
                }
                Given::Named(map)
            }
            Some(Value::Array(items)) => {
                if items.len() > names.len() {
                    return Err(RpcError::invalid_params(format!(
                        "{} positional params given, this method takes at most {} ({})",
                        items.len(),
                        names.len(),
                        list(names)
                    )));
                }
                Given::Positional(items)
            }
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "params must be an object or an array",
                ))
            }
        };
        Ok(Params { names, given })
    }

    /// The value given for `name`; an explicit `null` counts as not given.
    pub fn value(&self, name: &str) -> Option<&Value> {
        let v = match &self.given {
            Given::Named(map) => map.get(name),
            Given::Positional(items) => {
                let idx = self.names.iter().position(|n| *n == name)?;
                items.get(idx)
            }
        };
        v.filter(|v| !v.is_null())
    }

    pub fn optional<'a, T: Deserialize<'a>>(&'a self, name: &str) -> Result<Option<T>, RpcError> {
        self.value(name)
            .map(|v| {
                T::deserialize(v)
                    .map_err(|e| RpcError::invalid_params(format!("param {name:?}: {e}")))
            })
            .transpose()
    }

    pub fn required<'a, T: Deserialize<'a>>(&'a self, name: &str) -> Result<T, RpcError> {
        self.optional(name)?
            .ok_or_else(|| RpcError::invalid_params(format!("missing param {name:?}")))
    }

    /// The only positional value, if the params are exactly one positional value.
    pub fn single_positional(&self) -> Option<&Value> {
        match &self.given {
            Given::Positional(items) if items.len() == 1 => items.first(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NAMES: &[&str] = &["height", "hash"];

    #[test]
    fn named_and_positional_read_the_same() {
        let named = Params::new(Some(json!({"height": 5})), NAMES).expect("ok");
        let positional = Params::new(Some(json!([5])), NAMES).expect("ok");
        assert_eq!(named.required::<u64>("height").expect("h"), 5);
        assert_eq!(positional.required::<u64>("height").expect("h"), 5);
        assert_eq!(named.optional::<u64>("hash").expect("none"), None);
        let with_null = Params::new(Some(json!([null, "x"])), NAMES).expect("ok");
        assert_eq!(with_null.optional::<u64>("height").expect("none"), None);
        assert!(Params::new(None, &[]).is_ok());
        assert!(Params::new(Some(json!({})), &[]).is_ok());
    }

    #[test]
    fn errors_name_the_param_and_problem() {
        let e = Params::new(Some(json!({"hieght": 5})), NAMES).expect_err("unknown");
        assert_eq!(e.code, -32602);
        assert!(e.message.contains("hieght"), "{}", e.message);
        let e = Params::new(Some(json!([1, 2, 3])), NAMES).expect_err("too many");
        assert!(e.message.contains("at most 2"), "{}", e.message);
        let p = Params::new(Some(json!({"height": "five"})), NAMES).expect("ok");
        let e = p.required::<u64>("height").expect_err("type");
        assert!(e.message.contains("\"height\""), "{}", e.message);
        let e = p.required::<u64>("hash").expect_err("missing");
        assert_eq!(e.message, "missing param \"hash\"");
        let e = Params::new(Some(json!({"a": 1})), &[]).expect_err("takes none");
        assert!(e.message.contains("no params"), "{}", e.message);
    }
}
