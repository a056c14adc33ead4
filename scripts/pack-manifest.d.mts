/** Files a consumer's install needs that only a complete build makes. */
export const BUILD_FILES: readonly string[];
/** Throws, naming each file, unless the build in `dir` holds everything the package needs. */
export function checkBuild(dir?: string): void;
/** The package.json a consumer receives: the project's, without scripts or devDependencies. */
export function publishedManifest(text: string): string;
