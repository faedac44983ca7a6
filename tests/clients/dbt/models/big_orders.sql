{{ config(materialized='incremental', unique_key='id') }}
select id, customer_id, amount from {{ ref('orders') }}
where amount > 6
{% if is_incremental() %}
  and id > (select coalesce(max(id), 0) from {{ this }})
{% endif %}
