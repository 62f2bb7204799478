//! Struct definitions handed on to a reader that fills each field from the value of its name:
//! a row's columns (`row.rs`), a query string's parameters (`query.rs`).

/// Defines the struct, then invokes `$reader!(Name { field, … })`, which implements reading it.
macro_rules! define_then_read {
    ($reader:ident; $(#[$attr:meta])* $vis:vis struct $name:ident {
        $($(#[$field_attr:meta])* $field_vis:vis $field:ident : $ty:ty),* $(,)?
    }) => {
        $(#[$attr])*
        $vis struct $name {
            $($(#[$field_attr])* $field_vis $field: $ty),*
        }
        $reader!($name { $($field),* });
    };
}
pub(crate) use define_then_read;
