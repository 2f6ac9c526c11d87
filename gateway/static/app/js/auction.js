// Placeholder until the auction screens land (sessions, session, lot, bidding, deposits, results).
export const routes = [];
export function watchPersonalFrames() {}
