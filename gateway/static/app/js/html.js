// One place that binds htm to Preact, so screens import `html` and the hooks from here.
import { h, render, Fragment } from "preact";
import { useState, useEffect, useMemo, useRef, useCallback, useReducer } from "preact/hooks";
import htm from "htm";

export const html = htm.bind(h);
export { h, render, Fragment, useState, useEffect, useMemo, useRef, useCallback, useReducer };
