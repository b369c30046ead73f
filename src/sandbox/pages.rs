//! Renders a collection page (`@odata.context`, `value`, `@odata.nextLink` /
//! `@odata.deltaLink`) of rows or delta items into one byte buffer, outside any lock.

use super::entities::{Entity, Set};
use super::json;
use super::store::{DeltaItem, RowRef};
use super::values::{Ann, Ctx, Dims, write_row};

/// What goes into `value`.
pub enum Items {
    Rows(Vec<RowRef>),
    Delta(Vec<DeltaItem>),
}

impl Items {
    pub fn len(&self) -> usize {
        match self {
            Items::Rows(r) => r.len(),
            Items::Delta(d) => d.len(),
        }
    }
}

/// A collection page waiting to be rendered: everything it needs is owned, so rendering can
/// run on another thread, after the store lock is released.
pub struct Page {
    pub set: Set,
    pub sel: Vec<usize>,
    pub ann: Ann,
    pub context: String,
    /// `{root}` of the Web API, for tombstone contexts.
    pub root: String,
    pub count: Option<u64>,
    pub next_link: Option<String>,
    pub delta_link: Option<String>,
    pub items: Items,
}

impl Page {
    /// The whole body in one buffer.
    pub fn render(&self, ent: &Entity, dims: &Dims, seed: u64) -> Vec<u8> {
        let mut all = Vec::new();
        self.render_chunked(ent, dims, seed, usize::MAX, |c| {
            if all.is_empty() {
                all = c;
            } else {
                all.extend_from_slice(&c);
            }
            true
        });
        all
    }

    /// Renders the body, handing out chunks of roughly `chunk` bytes as they fill so the
    /// transfer overlaps the rendering; stops early when `emit` returns false (client gone).
    pub fn render_chunked(
        &self,
        ent: &Entity,
        dims: &Dims,
        seed: u64,
        chunk: usize,
        mut emit: impl FnMut(Vec<u8>) -> bool,
    ) {
        let per_row = 64 + self.sel.len() * 40 + if self.ann == Ann::default() { 0 } else { 300 };
        let cap = (512 + self.items.len() * per_row).min(chunk.saturating_add(8 * 1024));
        let mut out = Vec::with_capacity(cap);
        out.extend_from_slice(b"{\"@odata.context\":");
        json::string(&mut out, &self.context);
        if let Some(n) = self.count {
            out.extend_from_slice(b",\"@odata.count\":");
            json::u64(&mut out, n);
        }
        out.extend_from_slice(b",\"value\":[");
        let set = ent.set;
        let (sel, ann) = (&self.sel[..], self.ann);
        for i in 0..self.items.len() {
            if i > 0 {
                out.push(b',');
            }
            match &self.items {
                Items::Rows(rows) => write_row(
                    &mut out,
                    ent,
                    &Ctx::new(seed, set, &rows[i], dims),
                    sel,
                    ann,
                ),
                Items::Delta(items) => match &items[i] {
                    DeltaItem::Row(r) => {
                        write_row(&mut out, ent, &Ctx::new(seed, set, r, dims), sel, ann)
                    }
                    DeltaItem::Deleted(o) => {
                        out.extend_from_slice(b"{\"@odata.context\":\"");
                        out.extend_from_slice(self.root.as_bytes());
                        out.extend_from_slice(b"$metadata#");
                        out.extend_from_slice(set.name().as_bytes());
                        out.extend_from_slice(b"/$deletedEntity\",\"id\":");
                        json::guid(&mut out, set.code(), *o);
                        out.extend_from_slice(b",\"reason\":\"deleted\"}");
                    }
                },
            }
            if out.len() >= chunk {
                let full = std::mem::replace(&mut out, Vec::with_capacity(cap));
                if !emit(full) {
                    return;
                }
            }
        }
        out.push(b']');
        if let Some(l) = &self.next_link {
            out.extend_from_slice(b",\"@odata.nextLink\":");
            json::string(&mut out, l);
        }
        if let Some(l) = &self.delta_link {
            out.extend_from_slice(b",\"@odata.deltaLink\":");
            json::string(&mut out, l);
        }
        out.push(b'}');
        emit(out);
    }
}

/// A single entity (`GET accounts(id)`): the row with its own `@odata.context`.
pub fn render_entity(
    ent: &Entity,
    dims: &Dims,
    seed: u64,
    sel: &[usize],
    ann: Ann,
    context: &str,
    row: &RowRef,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(2048);
    out.extend_from_slice(b"{\"@odata.context\":");
    json::string(&mut out, context);
    out.push(b',');
    let mut body = Vec::with_capacity(2048);
    write_row(
        &mut body,
        ent,
        &Ctx::new(seed, ent.set, row, dims),
        sel,
        ann,
    );
    out.extend_from_slice(&body[1..]);
    out
}

#[cfg(test)]
mod tests {
    use super::super::entities::{ALL, Kind, Set};
    use super::super::options::Tenant;
    use super::super::store::Org;
    use super::*;

    fn dims(scale: u64) -> Dims {
        Dims {
            initial: ALL.map(|s| s.initial_rows(scale)),
        }
    }

    /// Every set renders valid JSON of its fields, each with the JSON type its Edm type has.
    #[test]
    fn pages_are_valid_json_with_typed_fields() {
        let d = dims(500);
        let org = Org::new(500, 42);
        for set in ALL {
            let ent = crate::sandbox::dataverse::schema::entity(set, Tenant::Custom).unwrap();
            let (rows, _) = org.table(set).scan(0, 200, |_| true);
            let sel: Vec<usize> = (0..ent.fields.len()).collect();
            let ann = Ann {
                logical: true,
                nav: true,
                formatted: true,
            };
            let page = Page {
                set,
                sel,
                ann,
                context: "ctx".into(),
                root: "http://x/".into(),
                count: None,
                next_link: Some("http://x/next".into()),
                delta_link: None,
                items: Items::Rows(rows),
            };
            let body = page.render(&ent, &d, 42);
            let mut chunked = Vec::new();
            page.render_chunked(&ent, &d, 42, 10_000, |c| {
                assert!(c.len() < 20_000);
                chunked.extend_from_slice(&c);
                true
            });
            assert_eq!(chunked, body);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!("{}: {e}: {}", set.name(), String::from_utf8_lossy(&body))
            });
            let rows = v["value"].as_array().unwrap();
            assert_eq!(rows.len(), 200.min(set.initial_rows(500) as usize));
            for r in rows {
                let obj = r.as_object().unwrap();
                for f in &ent.fields {
                    let val = obj
                        .get(&f.name)
                        .unwrap_or_else(|| panic!("{} lacks {}", set.name(), f.name));
                    let ok = val.is_null()
                        || match f.kind {
                            Kind::String
                            | Kind::Memo
                            | Kind::Uniqueidentifier
                            | Kind::Lookup
                            | Kind::Customer
                            | Kind::Owner => val.is_string(),
                            Kind::Integer
                            | Kind::BigInt
                            | Kind::Picklist
                            | Kind::State
                            | Kind::Status => val.is_i64(),
                            Kind::Money | Kind::Decimal | Kind::Double => val.is_f64(),
                            Kind::Boolean => val.is_boolean(),
                            Kind::DateTime(..) if f.kind.is_edm_date() => {
                                val.as_str().is_some_and(|s| s.len() == 10)
                            }
                            Kind::DateTime(..) => val
                                .as_str()
                                .is_some_and(|s| s.len() == 20 && s.ends_with('Z')),
                        };
                    assert!(ok, "{}.{} = {val}", set.name(), f.name);
                }
                assert_eq!(
                    obj["@odata.etag"].as_str().unwrap(),
                    format!("W/\"{}\"", obj["versionnumber"])
                );
            }
        }
    }

    #[test]
    fn account_rows_are_about_two_kilobytes() {
        let d = dims(10_000);
        let org = Org::new(10_000, 42);
        let ent =
            crate::sandbox::dataverse::schema::entity(Set::Accounts, Tenant::Standard).unwrap();
        let sel: Vec<usize> = (0..ent.fields.len()).collect();
        let (rows, _) = org.table(Set::Accounts).scan(0, 5000, |_| true);
        let page = Page {
            set: Set::Accounts,
            sel,
            ann: Ann {
                logical: true,
                ..Ann::default()
            },
            context: "c".into(),
            root: "r".into(),
            count: None,
            next_link: None,
            delta_link: None,
            items: Items::Rows(rows),
        };
        let body = page.render(&ent, &d, 42);
        let per_row = body.len() / 5000;
        assert!((1500..=2600).contains(&per_row), "{per_row} bytes per row");
    }
}
