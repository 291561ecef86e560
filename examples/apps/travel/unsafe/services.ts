/** The read services over the catalogue (the same in both variants: see lib/catalog.ts). */
export { geo, rate, profile, recommendation, user, flight } from "../lib/catalog.js";
