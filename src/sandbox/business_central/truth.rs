//! The Business Central tenant's truth: every live row of a table exactly as a full read with
//! every property selected serves it (`@odata.etag` included, FlowFields at their current
//! values, a Custom tenant's drifting text values as text), for tests that compare the
//! warehouse with the source row by row.
//!
//! BC rows do not carry their company: a reader knows it from the URL it read. So
//! [`Sandbox::business_central_truth`] concatenates the companies in the order of the
//! companies list (each in key order, the order of a paged read), and
//! [`Sandbox::business_central_company_truth`] gives one company's rows. In the real service
//! the same `id` can occur in two companies (a copied company keeps its SystemIds), so a test
//! must key rows by (company, id); the sandbox's ids happen to differ between companies.

use super::entities::Entity;
use super::render::{RowCtx, write_row};
use super::set::ALL;
use super::store::{COMPANIES, Store};
use super::{BusinessCentral, company_id};
use crate::sandbox::{Sandbox, TruthRow};

/// Every live row of `ent` in company `c`, as served, in key order.
fn company_rows(store: &Store, ent: &Entity, c: usize) -> Vec<TruthRow> {
    let all: Vec<usize> = (0..ent.fields.len()).collect();
    let mut buf = Vec::with_capacity(2048);
    store
        .live_rows(c, ent.set)
        .into_iter()
        .filter_map(|r| {
            buf.clear();
            write_row(&mut buf, ent, &RowCtx::new(store, c, ent.set, r), &all);
            match serde_json::from_slice::<serde_json::Value>(&buf) {
                Ok(serde_json::Value::Object(m)) => Some(m),
                _ => {
                    tracing::error!(
                        set = ent.set.name(),
                        "sandbox: a row did not render as JSON"
                    );
                    None
                }
            }
        })
        .collect()
}

/// The served entity behind a stream entity name (`sales_order_line`), if the tenant has it.
fn served<'a>(bc: &'a BusinessCentral, entity: &str) -> Option<&'a Entity> {
    let set = ALL.into_iter().find(|s| s.entity() == entity)?;
    bc.entity(set)
}

impl Sandbox {
    /// The tenant's truth for one business_central table (see [`Sandbox::truth`]): every
    /// company's rows, companies in the order of [`Sandbox::business_central_companies`], each
    /// in key order. `None` when the tenant does not have the table (Lean: `dimension_value`).
    pub(crate) fn business_central_truth(&self, entity: &str) -> Option<Vec<TruthRow>> {
        let bc = &self.app.business_central;
        let ent = served(bc, entity)?;
        let store = bc.store();
        Some(
            (0..COMPANIES.len())
                .flat_map(|c| company_rows(&store, ent, c))
                .collect(),
        )
    }

    /// One company's rows of a business_central table (`company_id` as the companies list
    /// gives it), as served, in key order; `None` for an unknown company or a table the tenant
    /// does not have.
    pub fn business_central_company_truth(
        &self,
        company: &str,
        entity: &str,
    ) -> Option<Vec<TruthRow>> {
        let bc = &self.app.business_central;
        let ent = served(bc, entity)?;
        let c = (0..COMPANIES.len()).find(|c| company_id(*c) == company)?;
        let store = bc.store();
        Some(company_rows(&store, ent, c))
    }
}
