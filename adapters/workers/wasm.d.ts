// Wrangler's CompiledWasm rule turns a `.wasm` import into a module compiled at deploy time.
declare module "*.wasm" {
  const module: WebAssembly.Module;
  export default module;
}
