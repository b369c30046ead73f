//! The entities of the Pipedrive fake, as a closed list: what its rows, fields and routes are
//! keyed by.

/// Entities with generated rows and custom fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Deal,
    Person,
    Org,
    Product,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Deal, Kind::Person, Kind::Org, Kind::Product];

    pub fn tag(self) -> u32 {
        0x50 + self as u32
    }

    /// The v2 list path segment.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Deal => "deals",
            Kind::Person => "persons",
            Kind::Org => "organizations",
            Kind::Product => "products",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            Kind::Deal => "deal",
            Kind::Person => "person",
            Kind::Org => "organization",
            Kind::Product => "product",
        }
    }

    /// Rows at start for a sandbox scale: deals scale/2, persons scale/2, organizations
    /// scale/4, products scale/100 (at least 10). Deal products are 0–4 per deal (≈2×deals).
    pub fn initial(self, scale: u64) -> i64 {
        let s = scale.max(1) as i64;
        match self {
            Kind::Deal => (s / 2).max(1),
            Kind::Person => (s / 2).max(1),
            Kind::Org => (s / 4).max(1),
            Kind::Product => (s / 100).max(10),
        }
    }
}
