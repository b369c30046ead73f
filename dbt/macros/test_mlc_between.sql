-- Generic test `mlc_between`: every non-null value of the column lies in [min_value, max_value]
-- (ratios of the marts). Written here because dbt_utils is not installed offline.
{% test mlc_between(model, column_name, min_value, max_value) %}

select {{ column_name }}
from {{ model }}
where {{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }}

{% endtest %}
