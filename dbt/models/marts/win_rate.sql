-- win_rate: closed opportunities per source system and close month: how many were won and
-- lost, the win rate (won / closed, by count and by amount) and the amount won.
with closed as (
    select
        source_system,
        cast({{ dbt.date_trunc('month', 'closed_on') }} as date) as close_month,
        status,
        coalesce(amount, 0) as amount
    from {{ ref('pipeline') }}
    where status in ('won', 'lost') and closed_on is not null
)

select
    source_system,
    close_month,
    count(*) as closed_count,
    count(case when status = 'won' then 1 end) as won_count,
    count(case when status = 'lost' then 1 end) as lost_count,
    cast(count(case when status = 'won' then 1 end) as {{ dbt.type_float() }})
        / cast(count(*) as {{ dbt.type_float() }}) as win_rate,
    sum(case when status = 'won' then amount else 0 end) as won_amount,
    sum(case when status = 'lost' then amount else 0 end) as lost_amount,
    case
        when sum(amount) = 0 then null
        else cast(sum(case when status = 'won' then amount else 0 end) as {{ dbt.type_float() }})
            / cast(sum(amount) as {{ dbt.type_float() }})
    end as win_rate_by_amount
from closed
group by source_system, close_month
