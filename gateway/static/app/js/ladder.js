// The lot's increment rule (加价幅度), as engine/book/increments.py decides it: a fixed unit on the
// grid start + k*unit, or bands in which the step depends on the price. The server decides; the
// app only uses this to offer prices the server will accept.

/** A ladder from the lot view's start_price, unit and increment_bands. */
export function ladderOf(lot) {
  const start = lot.start_price;
  if (!lot.increment_bands || !lot.increment_bands.length) {
    const unit = lot.unit || 1;
    return {
      start,
      stepAt: () => unit,
      nextUp: (price) => price + unit,
      atOrBelow: (price) => (price < start ? start : start + Math.floor((price - start) / unit) * unit),
    };
  }
  // Segments (anchor, upper, step) exactly as BandedIncrement._build_segments.
  const segments = [];
  let anchor = start;
  for (const [upper, step] of lot.increment_bands) {
    if (upper !== null && anchor >= upper) continue;
    segments.push([anchor, upper, step]);
    if (upper === null) break;
    anchor += Math.ceil((upper - anchor) / step) * step;
  }
  const segmentOf = (price) => {
    let found = null;
    for (const segment of segments) {
      if (price < segment[0]) break;
      found = segment;
    }
    return found;
  };
  return {
    start,
    stepAt: (price) => (segmentOf(price) || segments[0])[2],
    nextUp: (price) => {
      const segment = segmentOf(price);
      return segment ? price + segment[2] : start;
    },
    atOrBelow: (price) => {
      const segment = segmentOf(price);
      if (!segment) return start;
      const [base, , step] = segment;
      return base + Math.floor((price - base) / step) * step;
    },
  };
}

/** `price` moved up `steps` rungs of the ladder. */
export function stepsUp(ladder, price, steps) {
  let value = price;
  for (let i = 0; i < steps; i += 1) value = ladder.nextUp(value);
  return value;
}
