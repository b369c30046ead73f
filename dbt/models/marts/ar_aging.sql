-- ar_aging: Business Central's open receivables, one row per open sales invoice with a
-- remaining amount, bucketed by days past due as of `as_of_date()` (the `as_of_date` var,
-- default today): current (not yet due), 1-30, 31-60, 61-90, 91+.
with invoices as (
    select * from {{ ref('stg_business_central__sales_invoice') }}
    where status = 'Open' and remaining_amount > 0
),

customers as (
    select company_id, id, number, display_name from {{ ref('stg_business_central__customer') }}
),

aged as (
    select
        i.company_id,
        i.id as invoice_id,
        i.number as invoice_number,
        i.customer_id,
        coalesce(c.number, i.customer_number) as customer_number,
        coalesce(c.display_name, i.customer_name) as customer_name,
        i.invoice_date,
        i.due_date,
        i.currency_code,
        i.total_amount_including_tax,
        i.remaining_amount,
        {{ as_of_date() }} as as_of_date,
        {{ dbt.datediff('coalesce(i.due_date, i.invoice_date)', as_of_date(), 'day') }} as days_past_due
    from invoices as i
    left join customers as c on c.company_id = i.company_id and c.id = i.customer_id
)

select
    aged.*,
    case
        when days_past_due <= 0 then 'current'
        when days_past_due <= 30 then '1-30'
        when days_past_due <= 60 then '31-60'
        when days_past_due <= 90 then '61-90'
        else '91+'
    end as aging_bucket,
    case
        when days_past_due <= 0 then 0
        when days_past_due <= 30 then 1
        when days_past_due <= 60 then 2
        when days_past_due <= 90 then 3
        else 4
    end as aging_bucket_order
from aged
