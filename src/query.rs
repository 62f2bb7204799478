//! Query strings read into the types that name their parameters, as rows are (`row.rs`): one
//! call per parameter into a reader per value type, where serde's derive built a decoder for
//! every query type.

use std::borrow::Cow;
use std::cell::Cell;

/// A type read from one parameter.
pub trait Param: Sized + Default {
    /// The parameter's value (`None` when it is absent) as this type; `None` when it does not
    /// fit.
    fn read(value: Option<&str>) -> Option<Self>;
}

impl Param for String {
    fn read(value: Option<&str>) -> Option<Self> {
        value.map(str::to_string)
    }
}

impl Param for u32 {
    fn read(value: Option<&str>) -> Option<Self> {
        value?.parse().ok()
    }
}

impl Param for u64 {
    fn read(value: Option<&str>) -> Option<Self> {
        value?.parse().ok()
    }
}

/// An optional parameter: absent is `None`; present, it must fit (`limit=` is refused).
impl<T: Param> Param for Option<T> {
    fn read(value: Option<&str>) -> Option<Self> {
        match value {
            None => Some(None),
            Some(_) => T::read(value).map(Some),
        }
    }
}

/// A query string's parameters, decoded, and whether one asked for did not fit.
pub struct Params<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    unfit: Cell<bool>,
}

impl<'a> Params<'a> {
    /// `query` without its `?`.
    pub fn parse(query: &'a str) -> Params<'a> {
        Params {
            pairs: form_urlencoded::parse(query.as_bytes()).collect(),
            unfit: Cell::new(false),
        }
    }

    /// Whether parameter `name` is there at all.
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(key, _)| key == name)
    }

    /// Parameter `name` as `T`; when it does not fit (or is given twice), a default, and
    /// [`Params::all_fit`] is false.
    #[inline(never)]
    pub fn get<T: Param>(&self, name: &str) -> T {
        let mut values = self
            .pairs
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_ref());
        let first = values.next();
        let read = if values.next().is_some() {
            None
        } else {
            T::read(first)
        };
        read.unwrap_or_else(|| {
            self.unfit.set(true);
            T::default()
        })
    }

    /// Whether every parameter asked for fitted.
    pub fn all_fit(&self) -> bool {
        !self.unfit.get()
    }
}

/// A type made from a query string.
pub trait FromQuery: Sized {
    /// `None` when a parameter does not fit.
    fn from_query(params: &Params) -> Option<Self>;
}

/// Defines a struct read from the query parameters named like its fields.
macro_rules! from_query {
    ($name:ident { $($field:ident),* $(,)? }) => {
        impl $crate::query::FromQuery for $name {
            fn from_query(params: &$crate::query::Params) -> Option<Self> {
                let value = Self { $($field: params.get(stringify!($field))),* };
                params.all_fit().then_some(value)
            }
        }
    };
    ($($definition:tt)+) => {
        $crate::named::define_then_read!(from_query; $($definition)+);
    };
}
pub(crate) use from_query;

#[cfg(test)]
mod tests {
    use super::*;

    from_query! {
        #[derive(Debug, PartialEq)]
        struct Poll {
            after: u64,
            epoch: Option<String>,
            wait: Option<u32>,
        }
    }

    fn poll(query: &str) -> Option<Poll> {
        Poll::from_query(&Params::parse(query))
    }

    #[test]
    fn reads_named_parameters_in_any_order() {
        assert_eq!(
            poll("wait=20&after=7&epoch=e_1%2Bx+y&other=1"),
            Some(Poll {
                after: 7,
                epoch: Some("e_1+x y".into()),
                wait: Some(20),
            })
        );
        assert_eq!(
            poll("after=0"),
            Some(Poll {
                after: 0,
                epoch: None,
                wait: None,
            })
        );
    }

    #[test]
    fn refuses_what_does_not_fit() {
        // A required parameter missing, a number that is not one, an optional one left empty,
        // a parameter given twice.
        for query in [
            "",
            "wait=1",
            "after=-1",
            "after=1&wait=",
            "after=1&wait=x",
            "after=1&after=2",
            "after=1&epoch=a&epoch=b",
        ] {
            assert_eq!(poll(query), None, "{query}");
        }
    }

    #[test]
    fn tells_whether_a_parameter_is_there() {
        let params = Params::parse("epoch=&a=1");
        assert!(params.has("epoch"));
        assert!(!params.has("wait"));
    }
}
