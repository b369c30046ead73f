-- pipeline: every opportunity of Dataverse (Dynamics 365 Sales) and every deal of Pipedrive in
-- one shape, one row each, told apart by source_system. Amounts are in the record's currency;
-- weighted_amount = amount x probability.
with dataverse as (
    select
        'dataverse' as source_system,
        o.opportunityid as opportunity_id,
        o.name as opportunity_name,
        case o.statecode when 0 then 'open' when 1 then 'won' when 2 then 'lost' end as status,
        cast(o.salesstagecode as {{ dbt.type_string() }}) as stage,
        -- Won opportunities count at their actual value once it is known.
        cast(
            case when o.statecode = 1 then coalesce(o.actualvalue, o.estimatedvalue) else o.estimatedvalue end
            as {{ dbt.type_numeric() }}
        ) as amount,
        cast(null as {{ dbt.type_string() }}) as currency,
        cast(o.closeprobability as {{ dbt.type_float() }}) as probability,
        o.parentaccountid as account_id,
        a.name as account_name,
        o.ownerid as owner_id,
        o.estimatedclosedate as expected_close_date,
        o.actualclosedate as closed_on,
        o.createdon as created_at,
        o.modifiedon as updated_at
    from {{ ref('stg_dataverse__opportunity') }} as o
    left join {{ ref('stg_dataverse__account') }} as a on a.accountid = o.parentaccountid
),

pipedrive as (
    select
        'pipedrive' as source_system,
        cast(d.id as {{ dbt.type_string() }}) as opportunity_id,
        d.title as opportunity_name,
        d.status,
        s.name as stage,
        cast(d.value as {{ dbt.type_numeric() }}) as amount,
        d.currency,
        -- A deal without its own probability takes its stage's default.
        cast(coalesce(d.probability, s.deal_probability) as {{ dbt.type_float() }}) as probability,
        cast(d.org_id as {{ dbt.type_string() }}) as account_id,
        org.name as account_name,
        cast(d.owner_id as {{ dbt.type_string() }}) as owner_id,
        d.expected_close_date,
        cast(d.close_time as date) as closed_on,
        d.add_time as created_at,
        d.update_time as updated_at
    from {{ ref('stg_pipedrive__deal') }} as d
    left join {{ ref('stg_pipedrive__stage') }} as s on s.id = d.stage_id
    left join {{ ref('stg_pipedrive__organization') }} as org on org.id = d.org_id
),

unioned as (
    select * from dataverse
    union all
    select * from pipedrive
)

select
    source_system || ':' || opportunity_id as pipeline_key,
    unioned.*,
    amount * coalesce(probability, 0) / 100 as weighted_amount,
    status = 'open' as is_open
from unioned
