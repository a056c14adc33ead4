import type * as Capsule from "../adapters/browser/index.ts";

/** The OPFS directory `allowedFiles` are relative to (the runtime's default app root). */
export const OPFS_ROOT = "capsule";
const MAX_VIEW_BYTES = 64 * 1024;

interface Entry {
  path: string;
  size: number;
}

/** Lists, shows and deletes the files tasks left in the page's Origin Private File System. */
export class FileBrowser {
  constructor(
    readonly list: HTMLElement,
    readonly viewer: HTMLElement,
    readonly runtime: Promise<typeof Capsule>,
  ) {}

  async refresh(): Promise<void> {
    let entries: Entry[];
    try {
      entries = await listFiles();
    } catch (error) {
      this.list.replaceChildren(item(`Cannot read the Origin Private File System: ${error}`));
      return;
    }
    if (entries.length === 0) {
      this.list.replaceChildren(item("No files yet. Tasks with allowedFiles write here."));
      return;
    }
    this.list.replaceChildren(
      ...entries.map((entry) => {
        const row = document.createElement("li");
        row.className = "file-row";
        const name = document.createElement("span");
        name.className = "file-name";
        name.textContent = entry.path;
        const size = document.createElement("span");
        size.className = "file-size";
        size.textContent = `${entry.size} B`;
        const view = button("View", `View ${entry.path}`, () => this.#view(entry.path));
        const remove = button("Delete", `Delete ${entry.path}`, () => this.#remove(entry.path));
        row.append(name, size, view, remove);
        return row;
      }),
    );
  }

  async #view(path: string): Promise<void> {
    const capsule = await this.runtime;
    const bytes = await capsule.readFile(path, { opfsRoot: OPFS_ROOT });
    const shown = new TextDecoder().decode(bytes.subarray(0, MAX_VIEW_BYTES));
    const heading = document.createElement("h3");
    heading.textContent = path;
    const content = document.createElement("pre");
    content.className = "file-content";
    content.textContent = bytes.length > MAX_VIEW_BYTES ? `${shown}\n…` : shown;
    this.viewer.replaceChildren(heading, content);
    this.viewer.hidden = false;
  }

  async #remove(path: string): Promise<void> {
    const capsule = await this.runtime;
    await capsule.removeFile(path, { opfsRoot: OPFS_ROOT });
    if (this.viewer.querySelector("h3")?.textContent === path) this.viewer.hidden = true;
    await this.refresh();
  }
}

/**
 * Creates the directories the code's tasks list in allowedFiles: the page stands in for the
 * project directory, and a task may only be granted a directory that exists.
 */
export async function ensureDirectories(paths: readonly string[]): Promise<void> {
  const storage = await navigator.storage.getDirectory();
  for (const path of paths) {
    let directory = await storage.getDirectoryHandle(OPFS_ROOT, { create: true });
    for (const name of path.split("/")) {
      directory = await directory.getDirectoryHandle(name, { create: true });
    }
  }
}

async function listFiles(): Promise<Entry[]> {
  const storage = await navigator.storage.getDirectory();
  let root: FileSystemDirectoryHandle;
  try {
    root = await storage.getDirectoryHandle(OPFS_ROOT);
  } catch {
    return [];
  }
  const found: Entry[] = [];
  const walk = async (directory: FileSystemDirectoryHandle, prefix: string) => {
    // entries() is in every browser with OPFS; the DOM typings here predate it.
    const entries = (
      directory as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }
    ).entries();
    for await (const [name, handle] of entries) {
      if (handle.kind === "directory") {
        await walk(handle as FileSystemDirectoryHandle, `${prefix}${name}/`);
      } else {
        const file = await (handle as FileSystemFileHandle).getFile();
        found.push({ path: `${prefix}${name}`, size: file.size });
      }
    }
  };
  await walk(root, "");
  return found.sort((a, b) => a.path.localeCompare(b.path));
}

function item(text: string): HTMLLIElement {
  const li = document.createElement("li");
  li.textContent = text;
  return li;
}

function button(text: string, label: string, onClick: () => Promise<void>): HTMLButtonElement {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  element.setAttribute("aria-label", label);
  element.addEventListener("click", () => void onClick().catch((error) => alert(String(error))));
  return element;
}
