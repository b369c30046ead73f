//! Closed sets of names stored as text (manifests, the state store, `--json` output): one
//! macro gives each such enum its name, parsing, padding and SQL conversions.

/// For a field-less enum stored by name: `ALL`, `as_str`, `Display` (padding like a string,
/// so `{:<11}` lines up tables), `FromStr` (an unknown name is a state error saying what it
/// is), comparison with a name (`summary.kind == "snapshot"`, for tests and output checks), and
/// the state store's `ToValue`/`FromValue`. Serde names are the enum's own `rename_all`, which must agree.
macro_rules! stored_by_name {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = crate::error::Error;

            fn from_str(s: &str) -> crate::error::Result<Self> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|k| k.as_str() == s)
                    .ok_or_else(|| crate::error::Error::state(format!("unknown {} `{s}`", $what)))
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl crate::state::db::ToValue for $ty {
            fn to_value(&self) -> crate::state::db::Value {
                crate::state::db::Value::Text(self.as_str().to_string())
            }
        }

        impl crate::state::db::FromValue for $ty {
            fn from_value(v: &crate::state::db::Value) -> Option<Self> {
                match v {
                    crate::state::db::Value::Text(s) => s.parse().ok(),
                    _ => None,
                }
            }
        }
    };
}

pub(crate) use stored_by_name;
