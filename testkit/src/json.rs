//! Looking things up in the JSON a test reads back (reports, status bodies, manifests).

use serde_json::Value;

/// The element of the array `list` whose `field` is `value`; fails the test naming what it
/// looked for and in what.
pub fn find<'a>(list: &'a Value, field: &str, value: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list:#}"))
        .iter()
        .find(|item| item[field] == value)
        .unwrap_or_else(|| panic!("no element with {field} = {value:?} in {list:#}"))
}

/// The condition of `type_` in an object's or a status's `conditions`.
pub fn condition<'a>(with_conditions: &'a Value, type_: &str) -> &'a Value {
    find(&with_conditions["conditions"], "type", type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_by_field() {
        let status = json!({"conditions": [
            {"type": "DnsConfigured", "status": "True"},
            {"type": "Ready", "status": "False"},
        ]});
        assert_eq!(condition(&status, "Ready")["status"], "False");
    }

    #[test]
    #[should_panic(expected = "no element with type = \"EdgeServing\"")]
    fn names_what_is_missing() {
        condition(&json!({"conditions": []}), "EdgeServing");
    }
}
