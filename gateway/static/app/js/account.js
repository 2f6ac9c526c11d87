// Placeholder until the account screens land (orders, payment, addresses, coupons, wallet, deposits).
export const routes = [];
