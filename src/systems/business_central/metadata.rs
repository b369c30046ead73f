//! Business Central's live schema: the environment's `$metadata` (OData CSDL XML) says which
//! entity sets exist and which properties each entity type has. Every scalar property lands
//! (the v2.0 types are small, and what a tenant has beyond mlc's catalog are newer API versions'
//! fields and extension fields); navigation properties and streams do not.

use std::collections::{BTreeMap, BTreeSet};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};

use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::spec::live::{LiveEntity, LiveField};
use crate::spec::naming::snake_case;
use crate::spec::{ColumnType, Stream};

const API_PATH: &str = "/api/v2.0";

/// Reads and parses the environment's `$metadata`.
///
/// Fails when the request fails or the answer is not a CSDL document.
pub async fn metadata(ep: &Endpoint) -> Result<Csdl> {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/xml"));
    let url = format!("{}{API_PATH}/$metadata", ep.base);
    let resp = ep.http.get(&url, &headers, "metadata").await?;
    let xml = String::from_utf8_lossy(&resp.body);
    parse_csdl(&xml).map_err(|e| Error::decode("business_central.$metadata", e))
}

/// The live schema of `stream`'s entity set.
pub async fn read(ep: &Endpoint, stream: &Stream) -> Result<LiveEntity> {
    let Some(set) = stream.spec.entity_set.as_deref() else {
        return Ok(LiveEntity::Unlisted);
    };
    Ok(entity(&metadata(ep).await?, set))
}

/// What `csdl` says about entity set `set`.
pub fn entity(csdl: &Csdl, set: &str) -> LiveEntity {
    let Some(et) = csdl.sets.get(set).and_then(|t| csdl.types.get(t)) else {
        return LiveEntity::Absent {
            reason: format!("this environment's API v2.0 has no entity set `{set}`"),
        };
    };
    let fields = et
        .properties
        .iter()
        .filter_map(|p| {
            let ty = column_type(p, csdl)?;
            Some(LiveField {
                source: p.name.clone(),
                identity: p.name.clone(),
                column: snake_case(&p.name),
                ty,
                lands: true,
                label: None,
                source_type: None,
                options: Default::default(),
            })
        })
        .collect();
    LiveEntity::Present {
        fields,
        complete: true,
    }
}

/// One entity type of the CSDL document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityType {
    pub name: String,
    pub key: Vec<String>,
    pub properties: Vec<Property>,
}

/// One structural property.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: String,
    /// `Edm.String`, `Microsoft.NAV.contactType`, `Collection(...)`, …
    pub edm: String,
    pub nullable: bool,
    pub precision: Option<u8>,
    pub scale: Option<i8>,
    /// `MaxLength` of a text property: a longer value is refused on write.
    pub max_len: Option<u32>,
}

/// What a `$metadata` document declares.
#[derive(Debug, Clone, Default)]
pub struct Csdl {
    pub types: BTreeMap<String, EntityType>,
    /// Entity set name → entity type name (without namespace).
    pub sets: BTreeMap<String, String>,
    pub enums: BTreeSet<String>,
}

/// The first attribute called `name` (any prefix). Duplicate-name checks are off: they buy
/// nothing here (the first one wins) and were quadratic in the attribute count before
/// quick-xml 0.41 (RUSTSEC-2026-0194), which a server could exploit with one huge tag.
fn attr(e: &BytesStart, name: &str) -> Option<String> {
    let mut attrs = e.attributes();
    attrs.with_checks(false);
    attrs
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .map(|a| a.value.into_owned())
}

fn unqualified(t: &str) -> &str {
    t.rsplit('.').next().unwrap_or(t)
}

/// The largest `$metadata` document parsed. Business Central's v2.0 document is a few
/// megabytes even with many extensions; the cap bounds the time and memory a server can make
/// the parser spend on one answer.
pub const MAX_CSDL_BYTES: usize = 32 * 1024 * 1024;

/// Parses a CSDL document (at most [`MAX_CSDL_BYTES`]). A plain `Reader` without namespace
/// resolution: names are matched by local name, so `NsReader` and its per-tag namespace
/// bookkeeping (RUSTSEC-2026-0195 before quick-xml 0.41) are not needed.
pub fn parse_csdl(xml: &str) -> std::result::Result<Csdl, String> {
    if xml.len() > MAX_CSDL_BYTES {
        return Err(format!(
            "the document is {} bytes, more than the {MAX_CSDL_BYTES} a $metadata document is allowed",
            xml.len()
        ));
    }
    let mut reader = Reader::from_str(xml);
    let mut csdl = Csdl::default();
    let mut current: Option<EntityType> = None;
    let mut in_key = false;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("not valid XML at byte {}: {e}", reader.buffer_position()))?;
        let (e, empty) = match ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(e) => {
                match e.local_name().as_ref() {
                    "EntityType" => {
                        if let Some(t) = current.take() {
                            csdl.types.insert(t.name.clone(), t);
                        }
                    }
                    "Key" => in_key = false,
                    _ => {}
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        match e.local_name().as_ref() {
            "EntityType" => {
                let t = EntityType {
                    name: attr(&e, "Name").unwrap_or_default(),
                    ..EntityType::default()
                };
                if empty {
                    csdl.types.insert(t.name.clone(), t);
                } else {
                    current = Some(t);
                }
            }
            "Key" => in_key = !empty,
            "PropertyRef" if in_key => {
                if let (Some(t), Some(n)) = (current.as_mut(), attr(&e, "Name")) {
                    t.key.push(n);
                }
            }
            "Property" => {
                if let Some(t) = current.as_mut() {
                    t.properties.push(Property {
                        name: attr(&e, "Name").unwrap_or_default(),
                        edm: attr(&e, "Type").unwrap_or_default(),
                        nullable: attr(&e, "Nullable").as_deref() != Some("false"),
                        precision: attr(&e, "Precision").and_then(|p| p.parse().ok()),
                        scale: attr(&e, "Scale").and_then(|s| s.parse().ok()),
                        max_len: attr(&e, "MaxLength").and_then(|s| s.parse().ok()),
                    });
                }
            }
            "EnumType" => {
                if let Some(n) = attr(&e, "Name") {
                    csdl.enums.insert(n);
                }
            }
            "EntitySet" => {
                if let (Some(n), Some(t)) = (attr(&e, "Name"), attr(&e, "EntityType")) {
                    csdl.sets.insert(n, unqualified(&t).to_string());
                }
            }
            _ => {}
        }
    }
    Ok(csdl)
}

/// The warehouse type of a CSDL property type; `None` for what a table cannot hold
/// (streams, navigation).
pub fn column_type(p: &Property, csdl: &Csdl) -> Option<ColumnType> {
    let t = p.edm.as_str();
    if t.starts_with("Collection(") {
        return Some(ColumnType::Json);
    }
    Some(match t {
        "Edm.String" | "Edm.Guid" => ColumnType::String,
        "Edm.Int16" | "Edm.Int32" | "Edm.Int64" | "Edm.Byte" | "Edm.SByte" => ColumnType::Int64,
        "Edm.Double" | "Edm.Single" => ColumnType::Float64,
        "Edm.Decimal" => ColumnType::Decimal {
            precision: p.precision.unwrap_or(20),
            scale: p.scale.unwrap_or(5),
        },
        "Edm.Boolean" => ColumnType::Bool,
        "Edm.Date" => ColumnType::Date,
        "Edm.DateTimeOffset" => ColumnType::Timestamp,
        "Edm.Stream" | "Edm.Binary" => return None,
        other if csdl.enums.contains(unqualified(other)) => ColumnType::String,
        other if other.starts_with("Edm.") => ColumnType::String,
        // Complex types (addresses and the like) arrive as nested objects.
        _ => ColumnType::Json,
    })
}
