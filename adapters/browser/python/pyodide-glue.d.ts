// Pyodide's emscripten glue ships without types; the engine types what it uses (PyodideSources).
declare module "pyodide/pyodide.asm.mjs" {
  const createPyodideModule: (settings: Record<string, unknown>) => unknown;
  export default createPyodideModule;
}
