/**
 * Bearer-token checks for `/run`. Both tokens are hashed before comparing, so the comparison
 * takes the same time whatever the tokens' lengths and wherever they first differ.
 */

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(header: string | undefined | null): string | null {
  const match = /^Bearer[ \t]+(.*\S)[ \t]*$/i.exec(header ?? "");
  return match?.[1] ?? null;
}

export async function tokensMatch(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([digest(given), digest(expected)]);
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return difference === 0;
}

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}
