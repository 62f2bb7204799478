//! Reading enums whose JSON object names its variant in a field (`{"op": "claim", …}`), without
//! serde's buffering, so the Worker carries one decoder per type instead of two.
//!
//! serde's derive reads a tagged enum by first copying the whole object into a tree of owned
//! values, because the tag may come after the other fields, and then decodes the variant from
//! that tree. Every type inside then gets a second decoder, for the tree, beside its decoder for
//! JSON text: together about 200 KB of the Worker's wasm. [`tagged_enum!`](crate::tagged_enum)
//! keeps serde's tagged form for writing and reads it in two passes over the text instead:
//! the first finds the tag, the second reads the variant's fields from the same text with the
//! JSON decoder every other text uses (the tag itself is a field the variant ignores). What
//! goes over the wire does not change.

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, VariantAccess, Visitor,
};
use serde::Deserialize;

use crate::json::Objects;

/// A variant named apart from its fields: the decoder that serde derives for the plain
/// (`{"variant": {fields}}`) form reads it through this.
pub struct Variant<'a> {
    name: &'a str,
    fields: &'a str,
}

impl<'a> Variant<'a> {
    /// The variant `name`, its fields (and perhaps its tag) in the JSON object `fields`.
    pub fn new(name: &'a str, fields: &'a str) -> Self {
        Variant { name, fields }
    }
}

/// The name of the field `tag` of the JSON object `text` (the first, if it is repeated). The
/// tag is written first, so only the start of the text is looked at.
pub fn tag_of(text: &str, tag: &'static str) -> serde_json::Result<String> {
    crate::json::from_str(crate::json::member(text, tag)?)
}

/// Decodes through `decode` the JSON object `text` whose field `tag` names its variant.
pub fn from_text<T>(
    text: &str,
    tag: &'static str,
    decode: impl FnOnce(Variant<'_>) -> serde_json::Result<T>,
) -> serde_json::Result<T> {
    let name = tag_of(text, tag)?;
    decode(Variant::new(&name, text))
}

/// `Deserialize` for a tagged enum inside anything serde reads (a field, a list, a socket's
/// attachment): the object is taken as a JSON value, written out and read in two passes.
pub fn from_any<'de, D, T>(
    deserializer: D,
    tag: &'static str,
    decode: impl FnOnce(Variant<'_>) -> serde_json::Result<T>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    from_text(&value.to_string(), tag, decode).map_err(de::Error::custom)
}

impl<'de> Deserializer<'de> for Variant<'de> {
    type Error = serde_json::Error;

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> serde_json::Result<V::Value> {
        visitor.visit_enum(self)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> serde_json::Result<V::Value> {
        Err(de::Error::custom(
            "a tagged variant is read as an enum only",
        ))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

impl<'de> EnumAccess<'de> for Variant<'de> {
    type Error = serde_json::Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> serde_json::Result<(V::Value, Self)> {
        let name: de::value::StrDeserializer<'_, serde_json::Error> = self.name.into_deserializer();
        Ok((seed.deserialize(name)?, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'de> {
    type Error = serde_json::Error;

    fn unit_variant(self) -> serde_json::Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> serde_json::Result<T::Value> {
        let mut de = serde_json::Deserializer::from_str(self.fields);
        let value = seed.deserialize(Objects(&mut de))?;
        de.end()?;
        Ok(value)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        _visitor: V,
    ) -> serde_json::Result<V::Value> {
        Err(de::Error::custom("tuple variants are not tagged"))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> serde_json::Result<V::Value> {
        let mut de = serde_json::Deserializer::from_str(self.fields);
        let value = Objects(&mut de).deserialize_struct("", fields, visitor)?;
        de.end()?;
        Ok(value)
    }
}

/// Defines an enum read by variant name apart from its fields (see the module's text): it gets
/// `from_json_as(fields, variant)`, and with `tag = "…"` also `from_json(text)`, a
/// `Deserialize` for the object that names its variant in that field, and serde's tagged form
/// for its `Serialize` (which it must derive). Its variants are written once; serde's
/// plain-form decoder is derived for a private copy of them, which builds the enum itself.
/// Variants are named in snake_case on both sides. Unlike serde's tagged decoder, it reads the
/// tag as a name only (not a variant's number), takes the first of repeated tags, and hands a
/// newtype variant's inner type the whole object, tag included (none of the enums has one).
#[macro_export]
macro_rules! tagged_enum {
    (
        tag = $tag:literal;
        $(#[$attr:meta])*
        $vis:vis enum $name:ident { $($variants:tt)* }
    ) => {
        $crate::tagged_enum! {
            $(#[$attr])*
            #[serde(tag = $tag, rename_all = "snake_case")]
            $vis enum $name { $($variants)* }
        }

        impl $name {
            /// Decodes the JSON object `text`, whose tag field names the variant.
            #[allow(dead_code)]
            pub fn from_json(text: &str) -> ::serde_json::Result<Self> {
                $crate::tagged::from_text(text, $tag, |variant| Self::from_variant(variant))
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $crate::tagged::from_any(deserializer, $tag, |variant| Self::from_variant(variant))
            }
        }
    };
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident { $($variants:tt)* }
    ) => {
        $(#[$attr])*
        $vis enum $name { $($variants)* }

        const _: () = {
            type Decoded = $name;

            #[derive(::serde::Deserialize)]
            #[serde(remote = "Decoded", rename_all = "snake_case")]
            #[allow(dead_code)]
            enum Plain { $($variants)* }

            impl $name {
                /// Decodes the variant named `variant` from the fields of the JSON object
                /// `fields` (other fields, such as a tag, are ignored).
                #[allow(dead_code)]
                pub fn from_json_as(fields: &str, variant: &str) -> ::serde_json::Result<Self> {
                    Self::from_variant($crate::tagged::Variant::new(variant, fields))
                }

                fn from_variant(variant: $crate::tagged::Variant<'_>) -> ::serde_json::Result<Self> {
                    Plain::deserialize(variant)
                }
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    crate::tagged_enum! {
        tag = "op";
        #[derive(Debug, Clone, PartialEq, Serialize)]
        enum Request {
            /// A struct variant with defaults.
            NewThing {
                name: String,
                #[serde(default)]
                count: u32,
                #[serde(default, skip_serializing_if = "Option::is_none")]
                note: Option<String>,
            },
            Empty {},
            Online,
            Nested { inner: Inner },
        }
    }

    crate::tagged_enum! {
        tag = "kind";
        #[derive(Debug, Clone, PartialEq, Serialize)]
        enum Inner {
            Visitor { id: String },
            Agent { id: String, #[serde(default)] admin: bool },
        }
    }

    /// The same shapes with serde's own tagged decoder, for comparison.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "op", rename_all = "snake_case")]
    enum SerdeRequest {
        NewThing {
            name: String,
            #[serde(default)]
            count: u32,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            note: Option<String>,
        },
        Empty {},
        Online,
        Nested {
            inner: SerdeInner,
        },
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum SerdeInner {
        Visitor {
            id: String,
        },
        Agent {
            id: String,
            #[serde(default)]
            admin: bool,
        },
    }

    const SAMPLES: &[&str] = &[
        r#"{"op":"new_thing","name":"a"}"#,
        r#"{"name":"a","count":3,"op":"new_thing","note":"n"}"#,
        r#"{"op":"empty"}"#,
        r#"{"x":[1,{"op":"nested"}],"op":"online","y":null}"#,
        r#"{"op":"nested","inner":{"id":"v1","kind":"visitor"}}"#,
        r#"{"inner":{"kind":"agent","id":"a1","admin":true},"op":"nested"}"#,
    ];

    #[test]
    fn reads_what_serdes_tagged_decoder_reads_whatever_the_field_order() {
        for text in SAMPLES {
            let ours = Request::from_json(text).unwrap();
            let theirs: SerdeRequest = serde_json::from_str(text).unwrap();
            // Both write the same text, so they read the same thing.
            assert_eq!(
                serde_json::to_string(&ours).unwrap(),
                serde_json::to_string(&theirs).unwrap(),
                "{text}"
            );
            let via_deserialize: Request = serde_json::from_str(text).unwrap();
            assert_eq!(via_deserialize, ours);
            let via_value: Request =
                serde_json::from_value(serde_json::from_str(text).unwrap()).unwrap();
            assert_eq!(via_value, ours);
        }
    }

    #[test]
    fn what_it_writes_it_reads_back() {
        let request = Request::Nested {
            inner: Inner::Agent {
                id: "a".into(),
                admin: true,
            },
        };
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(
            text,
            r#"{"op":"nested","inner":{"kind":"agent","id":"a","admin":true}}"#
        );
        assert_eq!(Request::from_json(&text).unwrap(), request);
        let list: Vec<Request> = serde_json::from_str(&format!("[{text},{text}]")).unwrap();
        assert_eq!(list, vec![request.clone(), request]);
    }

    #[test]
    fn refuses_what_serdes_decoder_refuses() {
        for text in [
            r#"{"name":"a"}"#,
            r#"{"op":"unknown"}"#,
            r#"{"op":"new_thing"}"#,
            r#"{"op":"new_thing","name":1}"#,
            r#"{"op":3}"#,
            r#"[]"#,
            r#"{"op":"empty"} x"#,
            r#"{"op":"nested","inner":{"id":"v"}}"#,
        ] {
            assert!(Request::from_json(text).is_err(), "{text}");
            assert!(
                serde_json::from_str::<SerdeRequest>(text).is_err(),
                "{text}"
            );
        }
    }

    /// The object's entries in an order picked by `seed`, as JSON text.
    fn shuffled(value: &serde_json::Value, mut seed: u64) -> String {
        let mut entries: Vec<_> = value.as_object().unwrap().iter().collect();
        for i in (1..entries.len()).rev() {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            entries.swap(i, (seed >> 33) as usize % (i + 1));
        }
        let fields: Vec<String> = entries
            .iter()
            .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
            .collect();
        format!("{{{}}}", fields.join(","))
    }

    proptest::proptest! {
        #[test]
        fn any_order_of_the_fields_reads_as_serdes_decoder_reads_it(
            name in "[a-z\"\\\\]{0,8}",
            count in 0u32..5,
            note in proptest::option::of("[a-z é]{0,5}"),
            admin in proptest::bool::ANY,
            seed in proptest::num::u64::ANY,
        ) {
            for theirs in [
                SerdeRequest::NewThing { name: name.clone(), count, note: note.clone() },
                SerdeRequest::Nested { inner: SerdeInner::Agent { id: name.clone(), admin } },
                SerdeRequest::Online,
            ] {
                let value = serde_json::to_value(&theirs).unwrap();
                let text = shuffled(&value, seed);
                let ours = Request::from_json(&text).unwrap();
                proptest::prop_assert_eq!(serde_json::to_value(&ours).unwrap(), value);
                let back: SerdeRequest = serde_json::from_str(&text).unwrap();
                proptest::prop_assert_eq!(back, theirs);
            }
        }
    }

    #[test]
    fn a_variant_named_apart_from_its_fields() {
        assert_eq!(
            Inner::from_json_as(r#"{"id":"x"}"#, "visitor").unwrap(),
            Inner::Visitor { id: "x".into() }
        );
        assert!(Inner::from_json_as(r#"{"id":"x"}"#, "nobody").is_err());
    }
}
