//! Rows read from D1 and from a Durable Object's SQL storage, column by column.
//!
//! The runtime hands a row over as a JavaScript object of text, numbers and nulls. A row type
//! names its columns once, with [`from_row!`], and reading it is one call per column into a
//! few shared readers: 100 to 500 bytes of wasm per row type, where serde's derive built a
//! decoder of 1 to 2.5 KB for each of some sixty types.

use std::cell::Cell;

use js_sys::{Array, Reflect};
use wasm_bindgen::JsValue;

use crate::sql_text;

/// A type read from one column's value.
pub trait Column: Sized + Default {
    /// What the column must hold, for the error.
    const EXPECTED: &'static str;
    /// `None` when the value is not of this type.
    fn read(value: JsValue) -> Option<Self>;
}

impl Column for String {
    const EXPECTED: &'static str = "text";
    fn read(value: JsValue) -> Option<Self> {
        value.as_string()
    }
}

impl Column for f64 {
    const EXPECTED: &'static str = "a number";
    fn read(value: JsValue) -> Option<Self> {
        value.as_f64()
    }
}

/// A whole number the runtime can hand over exactly (SQLite's integers arrive as JavaScript
/// numbers).
#[inline(never)]
fn integer(value: &JsValue) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_991.0;
    let number = value.as_f64()?;
    (number.fract() == 0.0 && number.abs() <= EXACT).then_some(number as i64)
}

impl Column for i64 {
    const EXPECTED: &'static str = "an integer";
    fn read(value: JsValue) -> Option<Self> {
        integer(&value)
    }
}

/// Narrower whole numbers: the value must fit.
macro_rules! integer_column {
    ($($ty:ty => $expected:literal),*) => {$(
        impl Column for $ty {
            const EXPECTED: &'static str = $expected;
            fn read(value: JsValue) -> Option<Self> {
                integer(&value).and_then(|n| <$ty>::try_from(n).ok())
            }
        }
    )*};
}
integer_column!(
    u64 => "a non-negative integer",
    u32 => "a non-negative integer below 2^32",
    u8 => "an integer from 0 to 255",
    i32 => "an integer of 32 bits"
);

impl<T: Column> Column for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn read(value: JsValue) -> Option<Self> {
        if value.is_null() || value.is_undefined() {
            return Some(None);
        }
        T::read(value).map(Some)
    }
}

/// One row, as the runtime handed it over, and the first column that could not be read.
pub struct Columns {
    row: JsValue,
    /// The column's name, and what it should have held (`None`: it was not there at all).
    unreadable: Cell<Option<(&'static str, Option<&'static str>)>>,
}

impl Columns {
    pub fn new(row: JsValue) -> Columns {
        Columns {
            row,
            unreadable: Cell::new(None),
        }
    }

    /// The value of column `name` as `T`; when it is not one, a default, and
    /// [`Columns::all_read`] fails. (A reader that stopped at the first bad column was 2 KB of
    /// wasm per row type: each way out dropped what it had read so far.)
    #[inline(never)]
    pub fn get<T: Column>(&self, name: &'static str) -> T {
        // The name as a JavaScript string made once: a row read on the message path would
        // otherwise make one per column (short-lived heap the runtime's collector must clear).
        let value = Reflect::get(&self.row, &sql_text::text(name)).unwrap_or(JsValue::UNDEFINED);
        let absent = value.is_undefined();
        T::read(value).unwrap_or_else(|| {
            if self.unreadable.get().is_none() {
                self.unreadable
                    .set(Some((name, (!absent).then_some(T::EXPECTED))));
            }
            T::default()
        })
    }

    /// Whether every column asked for could be read.
    pub fn all_read(&self) -> worker::Result<()> {
        match self.unreadable.get() {
            None => Ok(()),
            Some((name, expected)) => Err(not_held(name, expected)),
        }
    }
}

#[cold]
#[inline(never)]
fn not_held(name: &str, expected: Option<&str>) -> worker::Error {
    worker::Error::RustError(match expected {
        Some(expected) => format!("column `{name}` does not hold {expected}"),
        None => format!("no column `{name}` in the row"),
    })
}

/// A type made from one row.
pub trait FromRow: Sized {
    fn from_row(row: &Columns) -> worker::Result<Self>;
}

/// Reads a row type from the columns named like its fields: for a type defined elsewhere, its
/// name and every field (`from_row!(EventRow { seq, kind, … })`); or a struct defined inside
/// the macro.
macro_rules! from_row {
    ($name:ident { $($field:ident),* $(,)? }) => {
        impl $crate::row::FromRow for $name {
            // A type of no columns reads nothing: that a row came is all it says.
            #[allow(unused_variables)]
            fn from_row(row: &$crate::row::Columns) -> ::worker::Result<Self> {
                let value = Self { $($field: row.get(stringify!($field))),* };
                row.all_read().map(|()| value)
            }
        }
    };
    ($($definition:tt)+) => {
        $crate::named::define_then_read!(from_row; $($definition)+);
    };
}
pub(crate) use from_row;

/// Reads every row of `rows`, an array of row objects.
pub fn read_all<T: FromRow>(rows: &Array) -> worker::Result<Vec<T>> {
    // A plain loop: collecting into a `Result` built an iterator adapter per row type.
    let mut read = Vec::with_capacity(rows.length() as usize);
    for row in rows.iter() {
        read.push(T::from_row(&Columns::new(row))?);
    }
    Ok(read)
}
