-- Singular test: the pipeline mart holds exactly one row per staged Dataverse opportunity and
-- Pipedrive deal (a join that fans out or drops rows fails it).
with expected as (
    select 'dataverse' as source_system, count(*) as n from {{ ref('stg_dataverse__opportunity') }}
    union all
    select 'pipedrive' as source_system, count(*) as n from {{ ref('stg_pipedrive__deal') }}
),

actual as (
    select source_system, count(*) as n from {{ ref('pipeline') }} group by source_system
)

select e.source_system, e.n as expected_rows, coalesce(a.n, 0) as actual_rows
from expected as e
left join actual as a on a.source_system = e.source_system
where coalesce(a.n, 0) <> e.n
