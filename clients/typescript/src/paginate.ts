// Pagination (AIP-158): `page_size` / `page_token` in, `next_page_token` out.

export interface PageRequest {
  pageToken?: string;
}

export interface PageResponse {
  nextPageToken: string;
}

/** Every page of a paginated call, starting from request.pageToken, until the token is empty. */
export async function* pages<Req extends PageRequest, Res extends PageResponse>(
  call: (request: Req) => Promise<Res>,
  request: Req,
): AsyncGenerator<Res, void, undefined> {
  let token = request.pageToken ?? "";
  const seen = new Set<string>();
  for (;;) {
    const page = await call({ ...request, pageToken: token });
    yield page;
    token = page.nextPageToken;
    if (token === "") return;
    // A server that hands out a token twice would loop forever.
    if (seen.has(token)) throw new Error("the server repeated a page token");
    seen.add(token);
  }
}

/** Every item over all pages, where items picks a page's items. */
export async function* items<Req extends PageRequest, Res extends PageResponse, T>(
  call: (request: Req) => Promise<Res>,
  request: Req,
  pick: (page: Res) => T[],
): AsyncGenerator<T, void, undefined> {
  for await (const page of pages(call, request)) yield* pick(page);
}
