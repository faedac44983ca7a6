{{ config(materialized='view') }}
select c.name, sum(o.amount) as total
from {{ ref('orders') }} o join {{ ref('customers') }} c on o.customer_id = c.id
group by c.name
