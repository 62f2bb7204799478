//! Reading JSON text into Parley's types, with a struct read from an object only.
//!
//! `serde_json` reads a struct from an object or, field by field in order, from an array, so
//! every struct's decoder comes in both forms; nothing Parley reads is written as an array,
//! and the array form was about 25 KB of the Worker's gzipped wasm. [`from_str`] hands the
//! decoders a reader that asks for an object wherever a struct is read (an array there is a
//! type error), so only the object form is built. Everything else reads as with
//! `serde_json::from_str`, with the same errors.

use std::fmt;

use serde::de::{
    DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use serde::Deserialize;

/// Reads `text` as one JSON value of type `T`, structs from objects only.
pub fn from_str<'a, T: Deserialize<'a>>(text: &'a str) -> serde_json::Result<T> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = T::deserialize(Objects(&mut de))?;
    de.end()?;
    Ok(value)
}

/// The text of the value of member `key` of the JSON object `text`, for a caller that reads it
/// with a decoder of its own (a tagged enum's `from_json`), without first copying it into a
/// `serde_json::Value`. Only the object's own members are looked at; the value is not
/// checked here but by whatever reads it, and the rest of the object not at all. The member's
/// name must be written without escapes (as `serde_json` writes plain ASCII names).
pub fn member<'a>(text: &'a str, key: &str) -> serde_json::Result<&'a str> {
    let bytes = text.as_bytes();
    let malformed = || <serde_json::Error as serde::de::Error>::custom("malformed JSON object");
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return Err(malformed());
    }
    at += 1;
    loop {
        at = skip_space(bytes, at);
        match bytes.get(at) {
            Some(b'}') => break,
            Some(b'"') => {}
            _ => return Err(malformed()),
        }
        let name_end = value_end(bytes, at).ok_or_else(malformed)?;
        let name = &text[at + 1..name_end - 1];
        at = skip_space(bytes, name_end);
        if bytes.get(at) != Some(&b':') {
            return Err(malformed());
        }
        let start = skip_space(bytes, at + 1);
        let end = value_end(bytes, start).ok_or_else(malformed)?;
        if name == key {
            return Ok(&text[start..end]);
        }
        at = skip_space(bytes, end);
        match bytes.get(at) {
            Some(b',') => at += 1,
            Some(b'}') => break,
            _ => return Err(malformed()),
        }
    }
    Err(<serde_json::Error as serde::de::Error>::custom(
        format_args!("missing field `{key}`"),
    ))
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Where the JSON value starting at `at` ends (just past it), or `None` if it is cut short.
/// Every position returned is at an ASCII byte or the end, so the text can be cut there.
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => {
            let mut i = at + 1;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'"' => return Some(i + 1),
                    _ => i += 1,
                }
            }
            None
        }
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            while i < bytes.len() {
                match bytes[i] {
                    b'"' => i = value_end(bytes, i)?,
                    b'{' | b'[' => {
                        depth += 1;
                        i += 1;
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        i += 1;
                        if depth == 0 {
                            return Some(i);
                        }
                    }
                    _ => i += 1,
                }
            }
            None
        }
        _ => {
            let end = (at..bytes.len())
                .find(|&i| matches!(bytes[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(bytes.len());
            (end > at).then_some(end)
        }
    }
}

/// A reader that reads structs as maps and passes itself on to everything inside.
pub struct Objects<D>(pub D);

/// A visitor whose nested readers are wrapped in [`Objects`].
struct Wrapped<V>(V);

macro_rules! forward_deserialize {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                self.0.$method(Wrapped(visitor))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Objects<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any, deserialize_bool, deserialize_i8, deserialize_i16, deserialize_i32,
        deserialize_i64, deserialize_i128, deserialize_u8, deserialize_u16, deserialize_u32,
        deserialize_u64, deserialize_u128, deserialize_f32, deserialize_f64, deserialize_char,
        deserialize_str, deserialize_string, deserialize_bytes, deserialize_byte_buf,
        deserialize_option, deserialize_unit, deserialize_seq, deserialize_map,
        deserialize_identifier, deserialize_ignored_any,
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, Wrapped(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_newtype_struct(name, Wrapped(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple(len, Wrapped(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple_struct(name, len, Wrapped(visitor))
    }

    /// The point of the wrapper: a struct is read as a map, never as a sequence.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_map(Wrapped(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, Wrapped(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(
            fn $method<E: serde::de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.0.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrapped<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }

    forward_visit! {
        visit_bool: bool, visit_i8: i8, visit_i16: i16, visit_i32: i32, visit_i64: i64,
        visit_i128: i128, visit_u8: u8, visit_u16: u16, visit_u32: u32, visit_u64: u64,
        visit_u128: u128, visit_f32: f32, visit_f64: f64, visit_char: char, visit_str: &str,
        visit_borrowed_str: &'de str, visit_string: String, visit_bytes: &[u8],
        visit_borrowed_bytes: &'de [u8], visit_byte_buf: Vec<u8>,
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.0.visit_some(Objects(deserializer))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        self.0.visit_newtype_struct(Objects(deserializer))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(Objects(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(Objects(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.0.visit_enum(Objects(data))
    }
}

/// A seed whose reader is wrapped in [`Objects`].
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Objects(deserializer))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Objects<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Objects<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seed(seed))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Objects<A> {
    type Error = A::Error;
    type Variant = Objects<A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(Seed(seed))?;
        Ok((value, Objects(variant)))
    }
}

/// Reads a struct variant's fields as a map (see [`Objects::deserialize_struct`]).
struct FieldsSeed<V>(V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for FieldsSeed<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        deserializer.deserialize_map(Wrapped(self.0))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Objects<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrapped(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.newtype_variant_seed(FieldsSeed(visitor))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::{from_str, member};

    #[derive(Debug, PartialEq, Deserialize)]
    struct Inner {
        a: u32,
        #[serde(default)]
        b: Option<String>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Plain,
        Shaped { x: i64 },
        Wrapped(Inner),
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Outer {
        inner: Inner,
        list: Vec<Inner>,
        maybe: Option<Inner>,
        map: BTreeMap<String, Inner>,
        kinds: Vec<Kind>,
        value: serde_json::Value,
        #[serde(default)]
        missing: Vec<u8>,
    }

    const TEXT: &str = r#"{
        "inner": {"a": 1, "b": "x"},
        "list": [{"a": 2}, {"b": null, "a": 3}],
        "maybe": {"a": 4},
        "map": {"k": {"a": 5}},
        "kinds": ["plain", {"shaped": {"x": -6}}, {"wrapped": {"a": 7}}],
        "value": {"deep": [1, {"z": true}], "n": 1.5},
        "ignored": [1, 2, {"three": 3}]
    }"#;

    #[test]
    fn reads_what_serde_json_reads_from_objects() {
        let ours: Outer = from_str(TEXT).unwrap();
        let theirs: Outer = serde_json::from_str(TEXT).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours.kinds[1], Kind::Shaped { x: -6 });
    }

    #[test]
    fn a_struct_written_as_an_array_is_refused() {
        assert!(serde_json::from_str::<Inner>(r#"[1, "x"]"#).is_ok());
        assert!(from_str::<Inner>(r#"[1, "x"]"#).is_err());
        assert!(from_str::<Outer>(&TEXT.replace(r#"{"a": 4}"#, "[4]")).is_err());
    }

    #[test]
    fn a_members_text_is_cut_out_as_written() {
        let text = r#" { "a" : 1 , "s": "x\\\"}y", "o": {"k": [1, "]", {"z": null}]}, "t": true} "#;
        assert_eq!(member(text, "a").unwrap(), "1");
        assert_eq!(member(text, "s").unwrap(), r#""x\\\"}y""#);
        assert_eq!(
            member(text, "o").unwrap(),
            r#"{"k": [1, "]", {"z": null}]}"#
        );
        assert_eq!(member(text, "t").unwrap(), "true");
        assert!(member(text, "k").is_err(), "only the object's own members");
        for bad in [
            "",
            "[]",
            "{",
            r#"{"a""#,
            r#"{"a":"#,
            r#"{"a":{"#,
            r#"{"a":"x"#,
            r#"{"a" 1}"#,
            r#"{"a":1 "b":2}"#,
        ] {
            assert!(member(bad, "b").is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn every_member_reads_back_as_its_value(
            entries in proptest::collection::btree_map("[a-z_]{1,6}", json_value(), 0..6),
            pretty in proptest::bool::ANY,
        ) {
            let object = serde_json::Value::Object(entries.clone().into_iter().collect());
            let text = if pretty {
                serde_json::to_string_pretty(&object).unwrap()
            } else {
                object.to_string()
            };
            for (key, value) in &entries {
                let cut: serde_json::Value = serde_json::from_str(member(&text, key).unwrap()).unwrap();
                proptest::prop_assert_eq!(&cut, value);
            }
            proptest::prop_assert!(member(&text, "absent-key").is_err());
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z \"\\\\{}\\[\\],:é😀]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("[a-z\"{}]{0,4}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for text in [
            r#"{"a": "1"}"#,
            r#"{"b": "x"}"#,
            r#"{"a": 1} trailing"#,
            r#"{"a": 1"#,
            "",
        ] {
            assert!(from_str::<Inner>(text).is_err(), "{text}");
            assert!(serde_json::from_str::<Inner>(text).is_err(), "{text}");
        }
    }
}
