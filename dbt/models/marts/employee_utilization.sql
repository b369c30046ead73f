-- employee_utilization: one row per Deltek employee. Vantagepoint's labor ledger (hours) is
-- not a stream yet, so utilization is measured on what the catalog holds: the employee's
-- activities, and the share of them tied to a regular (chargeable, ChargeType R) project,
-- next to the projects the employee manages and their fees.
with employees as (
    select * from {{ ref('stg_deltek__employee') }}
),

projects as (
    select wbs1, charge_type, status, fee, proj_mgr from {{ ref('stg_deltek__project') }}
),

activity_stats as (
    select
        a.owner as employee,
        count(*) as activities,
        count(case when p.wbs1 is not null then 1 end) as project_activities,
        count(case when p.charge_type = 'R' then 1 end) as chargeable_activities,
        count(case when a.completion_ind = 'Y' then 1 end) as completed_activities
    from {{ ref('stg_deltek__activity') }} as a
    left join projects as p on p.wbs1 = a.wbs1
    where a.owner is not null
    group by a.owner
),

managed as (
    select
        proj_mgr as employee,
        count(*) as managed_projects,
        count(case when status = 'A' then 1 end) as active_managed_projects,
        sum(fee) as managed_fee
    from projects
    where proj_mgr is not null
    group by proj_mgr
)

select
    e.employee,
    e.first_name,
    e.last_name,
    e.title,
    e.org,
    e.status,
    e.pay_type,
    e.hire_date,
    coalesce(a.activities, 0) as activities,
    coalesce(a.project_activities, 0) as project_activities,
    coalesce(a.chargeable_activities, 0) as chargeable_activities,
    coalesce(a.completed_activities, 0) as completed_activities,
    case
        when coalesce(a.activities, 0) = 0 then null
        else cast(a.chargeable_activities as {{ dbt.type_float() }}) / cast(a.activities as {{ dbt.type_float() }})
    end as utilization,
    coalesce(m.managed_projects, 0) as managed_projects,
    coalesce(m.active_managed_projects, 0) as active_managed_projects,
    coalesce(m.managed_fee, 0) as managed_fee
from employees as e
left join activity_stats as a on a.employee = e.employee
left join managed as m on m.employee = e.employee
