// The guest's Python sources, inlined as text by the browser build (esbuild's text loader).
declare module "*.py" {
  const source: string;
  export default source;
}
