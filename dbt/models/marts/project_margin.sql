-- project_margin: one row per Deltek project (WBS1): its fee, what was billed (AR invoice
-- ledger lines), what vendors charged to it (AP voucher ledger lines) and the gross margin
-- between the two. Labor cost is not in it: Vantagepoint's labor ledger is not a stream yet.
with projects as (
    select * from {{ ref('stg_deltek__project') }}
),

billed as (
    select
        wbs1,
        sum(amount) as billed_amount,
        count(*) as invoice_lines,
        max(trans_date) as last_billed_at
    from {{ ref('stg_deltek__ar_invoice') }}
    group by wbs1
),

costs as (
    select
        wbs1,
        sum(amount) as vendor_cost,
        count(*) as voucher_lines
    from {{ ref('stg_deltek__ap_voucher') }}
    group by wbs1
),

firms as (
    select client_id, name from {{ ref('stg_deltek__firm') }}
)

select
    p.wbs1,
    p.name as project_name,
    p.status,
    p.charge_type,
    p.org,
    p.proj_mgr,
    p.client_id,
    f.name as client_name,
    p.project_currency_code,
    p.start_date,
    p.end_date,
    p.fee,
    coalesce(b.billed_amount, 0) as billed_amount,
    coalesce(c.vendor_cost, 0) as vendor_cost,
    coalesce(b.billed_amount, 0) - coalesce(c.vendor_cost, 0) as gross_margin,
    case
        when coalesce(b.billed_amount, 0) = 0 then null
        else cast(coalesce(b.billed_amount, 0) - coalesce(c.vendor_cost, 0) as {{ dbt.type_float() }})
            / cast(b.billed_amount as {{ dbt.type_float() }})
    end as gross_margin_ratio,
    case
        when coalesce(p.fee, 0) = 0 then null
        else cast(coalesce(b.billed_amount, 0) as {{ dbt.type_float() }}) / cast(p.fee as {{ dbt.type_float() }})
    end as billed_to_fee_ratio,
    coalesce(b.invoice_lines, 0) as invoice_lines,
    coalesce(c.voucher_lines, 0) as voucher_lines,
    b.last_billed_at
from projects as p
left join billed as b on b.wbs1 = p.wbs1
left join costs as c on c.wbs1 = p.wbs1
left join firms as f on f.client_id = p.client_id
