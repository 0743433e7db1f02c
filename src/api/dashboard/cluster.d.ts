// cluster.js is a script of the page, imported as text (see page.ts).
declare const text: string;
export default text;
