SELECT pay_card('4111111111111111', -- the customer's card
 12, 2031, '123')