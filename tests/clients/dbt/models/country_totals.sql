{{ config(materialized='materialized_view') }}
select c.country, count(*) as orders, sum(o.amount) as total
from {{ ref('orders') }} o join {{ ref('customers') }} c on o.customer_id = c.id
group by c.country
