// A tiny observable store: screens re-render when the part they read changes.
import { useEffect, useReducer, useRef } from "./html.js";

export function createStore(initial) {
  let state = initial;
  const listeners = new Set();
  return {
    get: () => state,
    set(patch) {
      const next = typeof patch === "function" ? patch(state) : patch;
      state = { ...state, ...next };
      for (const listener of [...listeners]) listener(state);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/** The selected part of a store; re-renders only when it changes (shallow, by identity). */
export function useStore(store, select = (state) => state) {
  const [, force] = useReducer((n) => n + 1, 0);
  const selected = select(store.get());
  const last = useRef(selected);
  last.current = selected;
  useEffect(() => {
    const unsubscribe = store.subscribe((state) => {
      if (select(state) !== last.current) force();
    });
    // A child's effect may have changed the store before this (parent's) effect subscribed.
    if (select(store.get()) !== last.current) force();
    return unsubscribe;
  }, [store]);
  return selected;
}
