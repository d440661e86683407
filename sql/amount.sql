SELECT '12.34 USD'::pay_amount;
