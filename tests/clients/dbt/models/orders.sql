{{ config(materialized='table') }}
select * from (values (1, 1, 10), (2, 2, 20), (3, 1, 5)) as o(id, customer_id, amount)
{% if var('more_orders', false) %}
union all select 4, 3, 40
{% endif %}
