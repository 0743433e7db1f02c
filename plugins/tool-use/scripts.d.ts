// The tool scripts are imported as text (`with { type: "text" }`), so that a
// compiled matrixd binary carries them.
declare module "*.sh" {
  const text: string;
  export default text;
}
