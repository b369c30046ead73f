-- Generic test `mlc_unique_key`: the combination of `columns` identifies one row, i.e. a
-- composite primary key is unique. Written here because dbt_utils is not installed offline.
-- Usage (what `mlc catalog export-dbt` writes for composite keys):
--   data_tests:
--     - mlc_unique_key:
--         arguments:
--           columns: [company_id, id]
{% test mlc_unique_key(model, columns) %}

select
    {{ columns | join(', ') }},
    count(*) as rows_with_this_key
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1

{% endtest %}
