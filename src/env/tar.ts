/**
 * A minimal ustar writer: regular files and folders, for handing a task's
 * files to a container in one exec (`tar -x`) instead of one exec per file.
 */

const BLOCK = 512;

/** Split a path into ustar's name (100 bytes) and prefix (155 bytes); undefined when it does not fit. */
function splitName(path: string): { name: string; prefix: string } | undefined {
  const bytes = new TextEncoder().encode(path).byteLength;
  if (bytes <= 100) return { name: path, prefix: "" };
  for (let i = path.indexOf("/"); i >= 0; i = path.indexOf("/", i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    const enc = new TextEncoder();
    if (enc.encode(prefix).byteLength <= 155 && enc.encode(name).byteLength <= 100 && name.length > 0) return { name, prefix };
  }
  return undefined;
}

function writeString(block: Uint8Array, at: number, size: number, value: string): void {
  const bytes = new TextEncoder().encode(value);
  block.set(bytes.subarray(0, size), at);
}

function writeOctal(block: Uint8Array, at: number, size: number, value: number): void {
  writeString(block, at, size - 1, value.toString(8).padStart(size - 1, "0"));
}

function header(path: string, size: number, type: "0" | "5", mode: number): Uint8Array {
  const split = splitName(path);
  if (!split) throw new Error(`path too long for a tar entry: ${path}`);
  const h = new Uint8Array(BLOCK);
  writeString(h, 0, 100, split.name);
  writeOctal(h, 100, 8, mode);
  writeOctal(h, 108, 8, 0);
  writeOctal(h, 116, 8, 0);
  writeOctal(h, 124, 12, size);
  writeOctal(h, 136, 12, Math.floor(Date.now() / 1000));
  h.fill(0x20, 148, 156);
  writeString(h, 156, 1, type);
  writeString(h, 257, 6, "ustar");
  writeString(h, 263, 2, "00");
  writeString(h, 345, 155, split.prefix);
  let sum = 0;
  for (const b of h) sum += b;
  writeString(h, 148, 7, `${sum.toString(8).padStart(6, "0")}\0`);
  return h;
}

/** Whether every path fits a ustar header. */
export function tarFits(paths: readonly string[]): boolean {
  return paths.every((p) => splitName(p) !== undefined);
}

/** A tar archive of `files` (checked relative paths, split on "/") with their parent folders first. */
export function makeTar(files: ReadonlyArray<{ parts: string[]; data: Uint8Array }>): Uint8Array {
  const chunks: Uint8Array[] = [];
  const dirs = new Set<string>();
  for (const { parts, data } of files) {
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (dirs.has(dir)) continue;
      dirs.add(dir);
      chunks.push(header(`${dir}/`, 0, "5", 0o755));
    }
    chunks.push(header(parts.join("/"), data.byteLength, "0", 0o644));
    chunks.push(data);
    const pad = (BLOCK - (data.byteLength % BLOCK)) % BLOCK;
    if (pad > 0) chunks.push(new Uint8Array(pad));
  }
  chunks.push(new Uint8Array(BLOCK * 2));
  const total = chunks.reduce((n, c) => n + c.byteLength, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
