//! Sales documents through the Business Central fake's API: deep insert of lines, lines added
//! or changed later (totals follow), `Microsoft.NAV.post` and `Microsoft.NAV.shipAndInvoice`.
//! Posting moves FlowFields as BC's ledger entries do: the customer's `balanceDue` grows by the
//! invoice's total and shipped items leave `inventory`, while neither record is modified (no
//! new `lastModifiedDateTime`, no new etag).

use super::*;

pub(super) const LINE_AMOUNT_INPUTS: &[&str] =
    &["quantity", "unitPrice", "discountAmount", "discountPercent"];

/// Current values of some fields of a row.
pub(super) fn current(
    store: &Store,
    ent: &Entity,
    company: usize,
    row: Row,
    names: &[&str],
) -> Map<String, Value> {
    names
        .iter()
        .filter_map(|n| {
            ent.field(n)
                .map(|i| (n.to_string(), field_value(store, ent, company, row, i)))
        })
        .collect()
}

pub(super) fn num(v: Option<&Value>) -> f64 {
    v.and_then(Value::as_f64).unwrap_or(0.0)
}

pub(super) fn round2(f: f64) -> f64 {
    (f * 100.0).round() / 100.0
}

pub(super) fn money(f: f64) -> Value {
    Number::from_f64(round2(f)).map_or(Value::from(0), Value::Number)
}

/// Amounts of a line from quantity, unit price and a discount: the percent drives, unless the
/// client sent an amount in this request (`amount_sent`); tax 0 [ASSUMPTION].
pub(super) fn line_amounts(line: &Map<String, Value>, amount_sent: bool) -> Map<String, Value> {
    let qty = num(line.get("quantity"));
    let price = num(line.get("unitPrice"));
    let gross = qty * price;
    let (disc, pct) = match (line.get("discountAmount"), line.get("discountPercent")) {
        (Some(a), _) if amount_sent => {
            let a = num(Some(a));
            (a, if gross != 0.0 { a / gross * 100.0 } else { 0.0 })
        }
        (_, p) => (gross * num(p) / 100.0, num(p)),
    };
    let net = round2(gross - disc);
    let mut m = Map::new();
    m.insert("discountAmount".into(), money(disc));
    m.insert("discountPercent".into(), money(pct));
    for k in [
        "amountExcludingTax",
        "netAmount",
        "amountIncludingTax",
        "netAmountIncludingTax",
    ] {
        m.insert(k.into(), money(net));
    }
    for k in ["totalTaxAmount", "netTaxAmount", "taxPercent"] {
        m.insert(k.into(), Value::from(0));
    }
    m
}

/// Sets a document's totals from its live lines.
pub(super) fn recompute_totals(
    bc: &BusinessCentral,
    store: &mut Store,
    company: usize,
    h: Set,
    doc: u64,
) {
    let (Some((ls, _)), Some(lent)) = (lines_of(h), lines_of(h).and_then(|(s, _)| bc.entity(s)))
    else {
        return;
    };
    let (mut net, mut gross, mut disc) = (0.0, 0.0, 0.0);
    for o in doc * LINE_SLOTS..(doc + 1) * LINE_SLOTS {
        if let Some(r) = store.live(company, ls, o) {
            let v = current(
                store,
                lent,
                company,
                r,
                &["amountExcludingTax", "amountIncludingTax", "discountAmount"],
            );
            net += num(v.get("amountExcludingTax"));
            gross += num(v.get("amountIncludingTax"));
            disc += num(v.get("discountAmount"));
        }
    }
    let mut t = Map::new();
    t.insert("totalAmountExcludingTax".into(), money(net));
    t.insert("totalTaxAmount".into(), money(gross - net));
    t.insert("totalAmountIncludingTax".into(), money(gross));
    t.insert("discountAmount".into(), money(disc));
    if let Some(row) = store.live(company, h, doc) {
        touch(store, company, h, row);
    }
    store.writes.save(company, h, doc, t);
}

/// A referenced row of `set` by GUID (`…Id`) or by number (`…Number`), live.
pub(super) fn resolve(
    store: &Store,
    bc: &BusinessCentral,
    company: usize,
    set: Set,
    id: Option<&Value>,
    number: Option<&Value>,
) -> Result<Option<Row>, Reject> {
    let missing = |what: String| {
        reject(
            400,
            "Internal_RecordNotFound",
            format!(
                "The {} does not exist. Identification fields and values: {what}",
                set.type_name()
            ),
        )
    };
    if let Some(id) = id.filter(|v| !v.is_null()) {
        let s = id.as_str().unwrap_or_default();
        return json::parse_guid(s)
            .filter(|(code, _)| *code == set.code(company))
            .and_then(|(_, o)| store.live(company, set, o))
            .map(Some)
            .ok_or_else(|| missing(format!("Id='{s}'")));
    }
    if let Some(n) = number.filter(|v| !v.is_null()) {
        let ent = bc.entity(set).ok_or_else(|| missing(String::new()))?;
        return find_eq(store, ent, company, "number", n)
            .into_iter()
            .next()
            .map(Some)
            .ok_or_else(|| missing(format!("No.='{}'", n.as_str().unwrap_or_default())));
    }
    Ok(None)
}

pub(super) fn today() -> Value {
    Value::from(chrono::Utc::now().format("%Y-%m-%d").to_string())
}

/// The ordinal of the row of `set` a GUID value refers to, in `company`.
fn ordinal_of(set: Set, company: usize, id: Option<&Value>) -> Option<u64> {
    let (code, o) = json::parse_guid(id?.as_str()?)?;
    (code == set.code(company)).then_some(o)
}

fn hundredths(v: Option<&Value>) -> i64 {
    (num(v) * 100.0).round() as i64
}

/// The FlowFields a posted invoice moves: its customer owes `total` more; each item line's
/// quantity leaves stock.
fn post_flows(
    store: &mut Store,
    company: usize,
    customer: Option<&Value>,
    total: Option<&Value>,
    lines: &[Map<String, Value>],
) {
    if let Some(c) = ordinal_of(Set::Customers, company, customer) {
        store.post_flow(company, Set::Customers, c, hundredths(total));
    }
    for l in lines {
        if l.get("lineType").and_then(Value::as_str) != Some("Item") {
            continue;
        }
        if let Some(i) = ordinal_of(Set::Items, company, l.get("itemId")) {
            store.post_flow(company, Set::Items, i, -hundredths(l.get("quantity")));
        }
    }
}

/// `POST salesOrders|salesInvoices` with `…Lines` deep-inserted; all or nothing.
pub(super) fn create_document(
    bc: &BusinessCentral,
    store: &mut Store,
    root: &str,
    company: usize,
    ent: &Entity,
    body: Map<String, Value>,
) -> Done {
    let Some((ls, nav)) = lines_of(ent.set) else {
        return Err(not_allowed("POST"));
    };
    let lent = bc.entity(ls).ok_or_else(|| not_allowed("POST"))?;
    let cent = bc
        .entity(Set::Customers)
        .ok_or_else(|| not_allowed("POST"))?;
    let ient = bc.entity(Set::Items).ok_or_else(|| not_allowed("POST"))?;
    let mut fields = clean(ent, &body, Some(nav))?;
    let customer = resolve(
        store,
        bc,
        company,
        Set::Customers,
        body.get("customerId"),
        body.get("customerNumber"),
    )?
    .ok_or_else(|| {
        reject(
            400,
            "Application_FieldValidationException",
            "customerId or customerNumber must have a value.",
        )
    })?;
    if let Some(n) = fields.get("number")
        && !find_eq(store, ent, company, "number", n).is_empty()
    {
        return Err(duplicate(ent, n.as_str().unwrap_or_default()));
    }
    let cust = current(
        store,
        cent,
        company,
        customer,
        &[
            "id",
            "number",
            "displayName",
            "currencyCode",
            "addressLine1",
            "addressLine2",
            "city",
            "state",
            "country",
            "postalCode",
            "email",
            "phoneNumber",
            "blocked",
        ],
    );
    // BC refuses documents for a customer blocked for everything (Ship/Invoice blocks bite
    // later, at posting) [ASSUMPTION: the message is BC's, the code its dialog error].
    if cust.get("blocked").and_then(Value::as_str) == Some("All") {
        return Err(reject(
            400,
            "Application_DialogException",
            format!(
                "You cannot create this type of document when Customer {} is blocked with type All",
                cust.get("number")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ),
        ));
    }
    let empty = Vec::new();
    let lines_in = match body.get(nav) {
        None | Some(Value::Null) => &empty,
        Some(Value::Array(a)) => a,
        Some(_) => return Err(Reject::bad(format!("'{nav}' must be an array."))),
    };
    if lines_in.len() as u64 > LINE_SLOTS {
        return Err(Reject::bad(format!(
            "The sandbox takes at most {LINE_SLOTS} lines a document."
        )));
    }
    // Validate and price every line before saving anything.
    let mut lines = Vec::new();
    for l in lines_in {
        let Value::Object(lb) = l else {
            return Err(Reject::bad(format!("Each of '{nav}' must be an object.")));
        };
        lines.push(build_line(store, bc, company, lent, ient, lb)?);
    }
    // Header.
    let next = store.table(company, ent.set).next;
    let number = match fields.remove("number") {
        Some(n) => n,
        None => Value::from(series_number(store, ent, company, next)),
    };
    let mut head = blanks(ent);
    head.insert("number".into(), number);
    head.insert("status".into(), Value::from("Draft"));
    for (k, ck) in [
        ("customerId", "id"),
        ("customerNumber", "number"),
        ("customerName", "displayName"),
        ("billToCustomerId", "id"),
        ("billToCustomerNumber", "number"),
        ("billToName", "displayName"),
        ("shipToName", "displayName"),
        ("currencyCode", "currencyCode"),
        ("email", "email"),
        ("phoneNumber", "phoneNumber"),
    ] {
        head.insert(k.into(), cust.get(ck).cloned().unwrap_or(Value::from("")));
    }
    for part in [
        "AddressLine1",
        "AddressLine2",
        "City",
        "State",
        "Country",
        "PostalCode",
    ] {
        let src = format!("{}{}", part[..1].to_lowercase(), &part[1..]);
        for who in ["sellTo", "billTo", "shipTo"] {
            head.insert(
                format!("{who}{part}"),
                cust.get(&src).cloned().unwrap_or(Value::from("")),
            );
        }
    }
    for d in ["orderDate", "invoiceDate", "postingDate", "dueDate"] {
        head.insert(d.into(), today());
    }
    fields.remove("customerId");
    fields.remove("customerNumber");
    head.extend(fields);
    head.retain(|k, _| ent.field(k).is_some());
    let (o, _) = insert_row(store, company, ent.set);
    store.writes.save(company, ent.set, o, head);
    // Lines in slots 0..n; the implicit initial slots beyond n are deleted.
    let implicit = initial_lines(store.seed, ent.set.code(company), o);
    let n = lines.len() as u64;
    for (k, line) in lines.into_iter().enumerate() {
        let slot = o * LINE_SLOTS + k as u64;
        store.put(
            company,
            ls,
            slot,
            Meta {
                modified_ms: 0,
                revision: 0,
                deleted: false,
                inserted: true,
                poisoned: false,
            },
        );
        store.writes.save(company, ls, slot, line);
    }
    for k in n..implicit {
        store.put(
            company,
            ls,
            o * LINE_SLOTS + k,
            Meta {
                modified_ms: 0,
                revision: 0,
                deleted: true,
                inserted: false,
                poisoned: false,
            },
        );
    }
    recompute_totals(bc, store, company, ent.set, o);
    let id = json::guid_string(ent.set.code(company), o);
    let mut reply = entity_reply(store, root, company, ent, o)
        .header("location", location(root, company, ent.set, o));
    reply.status = 201;
    Ok((reply, Some(id)))
}

/// One line of a document body, validated and priced (item defaults: description, unit price,
/// unit of measure, quantity 1).
pub(super) fn build_line(
    store: &Store,
    bc: &BusinessCentral,
    company: usize,
    lent: &Entity,
    ient: &Entity,
    lb: &Map<String, Value>,
) -> Result<Map<String, Value>, Reject> {
    let mut lf = clean(lent, lb, None)?;
    let kind = lf
        .get("lineType")
        .and_then(Value::as_str)
        .unwrap_or("Item")
        .to_string();
    let mut line = blanks(lent);
    line.insert("lineType".into(), Value::from(kind.clone()));
    match kind.as_str() {
        "Item" => {
            let item = resolve(
                store,
                bc,
                company,
                Set::Items,
                lf.get("itemId"),
                lf.get("lineObjectNumber"),
            )?
            .ok_or_else(|| {
                reject(
                    400,
                    "Application_FieldValidationException",
                    "itemId or lineObjectNumber must have a value on an Item line.",
                )
            })?;
            let iv = current(
                store,
                ient,
                company,
                item,
                &[
                    "id",
                    "number",
                    "displayName",
                    "unitPrice",
                    "baseUnitOfMeasureCode",
                ],
            );
            line.insert("itemId".into(), iv["id"].clone());
            line.insert("lineObjectNumber".into(), iv["number"].clone());
            line.insert("description".into(), iv["displayName"].clone());
            line.insert("unitPrice".into(), iv["unitPrice"].clone());
            line.insert(
                "unitOfMeasureCode".into(),
                iv["baseUnitOfMeasureCode"].clone(),
            );
            line.insert("quantity".into(), Value::from(1));
        }
        "Comment" => {}
        other => {
            return Err(Reject {
                status: 400,
                code: "BadRequest_NotSupported",
                message: format!("The sandbox takes Item and Comment lines, not '{other}'."),
            });
        }
    }
    lf.remove("itemId");
    lf.remove("lineObjectNumber");
    line.extend(lf);
    if kind == "Comment" {
        line.insert("quantity".into(), Value::from(0));
    }
    let amounts = line_amounts(&line, lb.contains_key("discountAmount"));
    line.extend(amounts);
    for k in ["shipQuantity", "invoiceQuantity"] {
        if lent.field(k).is_some() {
            line.insert(k.into(), line["quantity"].clone());
        }
    }
    line.retain(|k, _| lent.field(k).is_some());
    Ok(line)
}

/// `POST {documents}({id})/{lines}`: one more line in a free slot; the totals follow.
pub(super) fn add_line(
    bc: &BusinessCentral,
    store: &mut Store,
    root: &str,
    company: usize,
    h: Set,
    id: &str,
    body: &Map<String, Value>,
) -> Done {
    let (ls, _) = lines_of(h).ok_or_else(|| not_allowed("POST"))?;
    let lent = bc.entity(ls).ok_or_else(|| not_allowed("POST"))?;
    let ient = bc.entity(Set::Items).ok_or_else(|| not_allowed("POST"))?;
    let doc = find_row(store, company, h, id)?;
    if is_posted(store, bc, company, h, doc) {
        return Err(posted_error("sales invoice"));
    }
    let line = build_line(store, bc, company, lent, ient, body)?;
    let slot = (doc.ordinal * LINE_SLOTS..(doc.ordinal + 1) * LINE_SLOTS)
        .find(|o| store.live(company, ls, *o).is_none())
        .ok_or_else(|| {
            Reject::bad(format!(
                "The sandbox takes at most {LINE_SLOTS} lines a document."
            ))
        })?;
    let old = store.table(company, ls).changed.get(&slot).copied();
    store.put(
        company,
        ls,
        slot,
        Meta {
            modified_ms: 0,
            revision: old.map_or(0, |m| m.revision + 1),
            deleted: false,
            inserted: true,
            poisoned: false,
        },
    );
    // A reused slot starts from blanks, not from an earlier line's values.
    store.writes.rows.remove(&(company, ls, slot));
    store.writes.save(company, ls, slot, line);
    recompute_totals(bc, store, company, h, doc.ordinal);
    let mut reply = entity_reply(store, root, company, lent, slot)
        .header("location", location(root, company, ls, slot));
    reply.status = 201;
    Ok((reply, Some(json::guid_string(ls.code(company), slot))))
}

/// Every field of a row as rendered (saved values first), structural ones left out.
pub(super) fn all_values(
    store: &Store,
    ent: &Entity,
    company: usize,
    row: Row,
) -> Map<String, Value> {
    let mut out = Vec::new();
    let all: Vec<usize> = (0..ent.fields.len()).collect();
    render::write_row(
        &mut out,
        ent,
        &RowCtx::new(store, company, ent.set, row),
        &all,
    );
    match serde_json::from_slice::<Value>(&out) {
        Ok(Value::Object(mut m)) => {
            m.retain(|k, _| !k.starts_with('@') && !structural(ent.set, k));
            m
        }
        _ => Map::new(),
    }
}

/// The row a bound action runs on; an `If-Match` is optional on actions, checked when sent.
fn action_row(
    store: &Store,
    ent: &Entity,
    company: usize,
    id: &str,
    if_match: Option<&str>,
) -> Result<Row, Reject> {
    let row = find_row(store, company, ent.set, id)?;
    if if_match.is_some() {
        check_etag(store, ent, company, row, if_match)?;
    }
    Ok(row)
}

/// `POST salesOrders({id})/Microsoft.NAV.shipAndInvoice`: the whole order becomes a posted
/// invoice with the same lines; the order is deleted.
pub(super) fn ship_and_invoice(
    bc: &BusinessCentral,
    store: &mut Store,
    company: usize,
    ent: &Entity,
    id: &str,
    if_match: Option<&str>,
) -> Done {
    let order = action_row(store, ent, company, id, if_match)?;
    let (order_lines, inv_ent, inv_lines) = match (
        bc.entity(Set::SalesOrderLines),
        bc.entity(Set::SalesInvoices),
        bc.entity(Set::SalesInvoiceLines),
    ) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => return Err(not_allowed("POST")),
    };
    let lines: Vec<Map<String, Value>> = (order.ordinal * LINE_SLOTS
        ..(order.ordinal + 1) * LINE_SLOTS)
        .filter_map(|o| store.live(company, Set::SalesOrderLines, o))
        .map(|r| all_values(store, order_lines, company, r))
        .collect();
    if lines.is_empty() {
        return Err(reject(
            400,
            "Application_DialogException",
            "There is nothing to post.",
        ));
    }
    let head = all_values(store, ent, company, order);
    let next = store.table(company, Set::SalesInvoices).next;
    let mut inv = blanks(inv_ent);
    for (k, v) in &head {
        if inv.contains_key(k) {
            inv.insert(k.clone(), v.clone());
        }
    }
    inv.insert(
        "number".into(),
        Value::from(series_number(store, inv_ent, company, next)),
    );
    inv.insert("status".into(), Value::from("Open"));
    inv.insert(
        "orderId".into(),
        Value::from(json::guid_string(ent.set.code(company), order.ordinal)),
    );
    inv.insert(
        "orderNumber".into(),
        head.get("number").cloned().unwrap_or(Value::from("")),
    );
    for d in ["invoiceDate", "postingDate", "dueDate"] {
        inv.insert(d.into(), today());
    }
    inv.retain(|k, _| inv_ent.field(k).is_some());
    let (o, _) = insert_row(store, company, Set::SalesInvoices);
    store.writes.save(company, Set::SalesInvoices, o, inv);
    let implicit = initial_lines(store.seed, Set::SalesInvoices.code(company), o);
    let n = lines.len() as u64;
    let shipped = lines.clone();
    for (k, line) in lines.into_iter().enumerate() {
        let mut l = blanks(inv_lines);
        for (f, v) in line {
            if l.contains_key(&f) {
                l.insert(f, v);
            }
        }
        let slot = o * LINE_SLOTS + k as u64;
        store.put(
            company,
            Set::SalesInvoiceLines,
            slot,
            Meta {
                modified_ms: 0,
                revision: 0,
                deleted: false,
                inserted: true,
                poisoned: false,
            },
        );
        store.writes.save(company, Set::SalesInvoiceLines, slot, l);
    }
    for k in n..implicit {
        store.put(
            company,
            Set::SalesInvoiceLines,
            o * LINE_SLOTS + k,
            Meta {
                modified_ms: 0,
                revision: 0,
                deleted: true,
                inserted: false,
                poisoned: false,
            },
        );
    }
    recompute_totals(bc, store, company, Set::SalesInvoices, o);
    let total = store
        .live(company, Set::SalesInvoices, o)
        .map(|r| current(store, inv_ent, company, r, &["totalAmountIncludingTax"]))
        .unwrap_or_default();
    if let Some(t) = total.get("totalAmountIncludingTax") {
        let mut m = Map::new();
        m.insert("remainingAmount".into(), t.clone());
        store.writes.save(company, Set::SalesInvoices, o, m);
    }
    post_flows(
        store,
        company,
        head.get("customerId"),
        total.get("totalAmountIncludingTax"),
        &shipped,
    );
    let ms = store.write_clock();
    store.put(
        company,
        ent.set,
        order.ordinal,
        Meta {
            modified_ms: ms,
            revision: order.revision,
            deleted: true,
            inserted: false,
            poisoned: false,
        },
    );
    no_content(Set::SalesInvoices, company, o)
}

/// `POST salesInvoices({id})/Microsoft.NAV.post`: Draft → Open, once.
pub(super) fn post_invoice(
    bc: &BusinessCentral,
    store: &mut Store,
    company: usize,
    ent: &Entity,
    id: &str,
    if_match: Option<&str>,
) -> Done {
    let row = action_row(store, ent, company, id, if_match)?;
    if is_posted(store, bc, company, ent.set, row) {
        return Err(reject(
            400,
            "Application_DialogException",
            "The sales invoice has already been posted.",
        ));
    }
    let has_lines = (row.ordinal * LINE_SLOTS..(row.ordinal + 1) * LINE_SLOTS)
        .any(|o| store.live(company, Set::SalesInvoiceLines, o).is_some());
    if !has_lines {
        return Err(reject(
            400,
            "Application_DialogException",
            "There is nothing to post.",
        ));
    }
    let total = current(
        store,
        ent,
        company,
        row,
        &["totalAmountIncludingTax", "customerId"],
    );
    let mut fields = Map::new();
    fields.insert("status".into(), Value::from("Open"));
    if let Some(t) = total.get("totalAmountIncludingTax") {
        fields.insert("remainingAmount".into(), t.clone());
    }
    touch(store, company, ent.set, row);
    store.writes.save(company, ent.set, row.ordinal, fields);
    let lines: Vec<Map<String, Value>> = match bc.entity(Set::SalesInvoiceLines) {
        Some(lent) => (row.ordinal * LINE_SLOTS..(row.ordinal + 1) * LINE_SLOTS)
            .filter_map(|o| store.live(company, Set::SalesInvoiceLines, o))
            .map(|r| current(store, lent, company, r, &["lineType", "itemId", "quantity"]))
            .collect(),
        None => Vec::new(),
    };
    post_flows(
        store,
        company,
        total.get("customerId"),
        total.get("totalAmountIncludingTax"),
        &lines,
    );
    no_content(ent.set, company, row.ordinal)
}

/// `GET {documents}({id})/{lines}`: the document's lines, or `None` when `tail` is not such a
/// path.
pub fn nested_lines(
    bc: &BusinessCentral,
    root: &str,
    company: usize,
    tail: &str,
    select: Option<&str>,
) -> Option<Result<Reply, Reject>> {
    let (head, nav) = tail.split_once('/')?;
    let (name, id) = head.split_once('(')?;
    let set = Set::from_name(name)?;
    Some((|| {
        let (ls, lnav) = lines_of(set).ok_or_else(|| not_allowed("GET"))?;
        if nav != lnav {
            return Err(not_allowed("GET"));
        }
        let lent = bc.entity(ls).ok_or_else(|| not_allowed("GET"))?;
        let sel = super::super::query::select(lent, select)?;
        let store = bc.store();
        let id = id.trim_end_matches(')');
        let doc = find_row(&store, company, set, id)?;
        let mut out = format!(
            "{{\"@odata.context\":\"{root}$metadata#companies({})/{}({id})/{lnav}\",\"value\":[",
            company_id(company),
            set.name()
        )
        .into_bytes();
        let mut first = true;
        for o in doc.ordinal * LINE_SLOTS..(doc.ordinal + 1) * LINE_SLOTS {
            if let Some(r) = store.live(company, ls, o) {
                if !first {
                    out.push(b',');
                }
                first = false;
                render::write_row(&mut out, lent, &RowCtx::new(&store, company, ls, r), &sel);
            }
        }
        out.extend_from_slice(b"]}");
        Ok(Reply::json(out))
    })())
}
