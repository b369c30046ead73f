//! The served shape of each Business Central entity set (set.rs) for a tenant variant, built
//! from the fake's own schema (schema.rs), never from mlc's catalog.

use super::schema::{self, Prop};
use super::set::Set;
use crate::sandbox::Tenant;

/// One served field.
#[derive(Debug, Clone)]
pub struct Field {
    /// Payload key (`displayName`).
    pub name: String,
    /// `$metadata` type (`Edm.Guid`, `Edm.Decimal`, `Microsoft.NAV.customerBlocked`, …).
    pub edm: &'static str,
    pub nullable: bool,
    pub max_len: Option<u16>,
    /// A FlowField: its value moves without `lastModifiedDateTime` (schema.rs [`COMPUTED`]).
    ///
    /// [`COMPUTED`]: schema::COMPUTED
    pub computed: bool,
    /// `,"displayName":` pre-rendered.
    pub key: Vec<u8>,
    /// The name in lower case (generators match on it; computed once, not per row).
    pub lower: String,
    /// Hash tag of the field: a function of its name only, so a field keeps its values in every
    /// tenant variant whatever else the variant adds or leaves out.
    pub tag: u64,
}

/// The hash tag of field `name` (FNV-1a, then a splitmix finaliser); `const` so generators can
/// name another field's tag (a document's customer name is the customer's `displayName`).
pub const fn tag_of(name: &str) -> u64 {
    let b = name.as_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < b.len() {
        h = (h ^ b[i] as u64).wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The served shape of one entity set.
#[derive(Debug, Clone)]
pub struct Entity {
    pub set: Set,
    pub fields: Vec<Field>,
}

impl Entity {
    /// The shape of `set` in `tenant`, or `None` when the tenant does not have the set.
    pub fn load(set: Set, tenant: Tenant) -> Option<Entity> {
        let props = schema::served(set, tenant)?;
        Some(Entity {
            set,
            fields: props.iter().map(|p| Entity::field_of(set, p)).collect(),
        })
    }

    fn field_of(set: Set, p: &Prop) -> Field {
        Field {
            name: p.name.to_string(),
            edm: p.ty,
            nullable: p.nullable,
            max_len: p.max_len,
            computed: schema::is_computed(set, p.name),
            key: format!(",\"{}\":", p.name).into_bytes(),
            lower: p.name.to_ascii_lowercase(),
            tag: tag_of(p.name),
        }
    }

    pub fn field(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::business_central::set::ALL;

    #[test]
    fn every_set_loads_in_the_standard_tenant() {
        for s in ALL {
            let e = Entity::load(s, Tenant::Standard).unwrap();
            assert!(e.field("id").is_some());
            assert_eq!(
                e.field("lastModifiedDateTime").is_some(),
                s.has_modified(),
                "{s:?}"
            );
        }
    }
}
