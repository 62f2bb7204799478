// Imports esbuild resolves at build time (see widget/build.mjs).
declare module '*.css' {
  const text: string;
  export default text;
}
