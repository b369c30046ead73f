-- `as_of_date()`: the day reports are computed for, from the `as_of_date` var (YYYY-MM-DD) or
-- today. A macro so every mart uses the same day and the same SQL on DuckDB and BigQuery.
{% macro as_of_date() -%}
    {%- if var('as_of_date', none) -%}
        cast('{{ var("as_of_date") }}' as date)
    {%- else -%}
        current_date
    {%- endif -%}
{%- endmacro %}
