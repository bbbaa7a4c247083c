// Classifies an HTTP request to a vector-database API into an access level (read / write /
// admin), the collection it touches and whether the guard must read its JSON body. One table
// per flavor; anything a table does not name is `admin`, so an API the gateway does not know
// yet is never reachable with less than full access.
import type { AccessLevel, HttpConnectionConfig } from '../../src/config/types.js';

export type HttpFlavor = HttpConnectionConfig['flavor'];

/** What the guard looks at in the body of a route. */
export type InspectKind =
  /** JSON body that may ask for vectors back or carry a top-k / page size. */
  | 'json'
  /** The route always returns raw vectors (Qdrant GET of one point): only vector-readers may call it. */
  | 'returns-vectors';

export interface RouteDecision {
  access: AccessLevel;
  /** Short stable name of the operation, for logs, refusals and recordings ("points.search"). */
  operation: string;
  /** Collection / index / class the request names in its path; null when it names none (or the body does). */
  collection: string | null;
  inspect: InspectKind | null;
}

interface RouteRule {
  methods: readonly string[];
  /** Path segments; `:c` captures the collection, any other `:x` matches one segment. */
  pattern: readonly string[];
  access: AccessLevel;
  operation: string;
  inspect?: InspectKind;
}

const READ_METHODS = ['GET', 'HEAD'] as const;

function rule(methods: readonly string[] | string, path: string, access: AccessLevel, operation: string, inspect?: InspectKind): RouteRule {
  const ms = typeof methods === 'string' ? methods.split('|') : methods;
  return { methods: ms, pattern: path.split('/').filter((s) => s !== ''), access, operation, inspect };
}

// Qdrant REST (v1.x). Reads that can return vectors or take a limit are inspected.
const QDRANT: readonly RouteRule[] = [
  rule(READ_METHODS, '/', 'read', 'version'),
  rule(READ_METHODS, '/healthz', 'read', 'health'),
  rule(READ_METHODS, '/livez', 'read', 'health'),
  rule(READ_METHODS, '/readyz', 'read', 'health'),
  rule(READ_METHODS, '/collections', 'read', 'collections.list'),
  rule(READ_METHODS, '/aliases', 'read', 'aliases.list'),
  rule(READ_METHODS, '/collections/:c', 'read', 'collections.get'),
  rule(READ_METHODS, '/collections/:c/exists', 'read', 'collections.exists'),
  rule(READ_METHODS, '/collections/:c/aliases', 'read', 'aliases.list'),
  rule('POST', '/collections/:c/points', 'read', 'points.get', 'json'),
  rule(READ_METHODS, '/collections/:c/points/:id', 'read', 'points.get-one', 'returns-vectors'),
  rule('POST', '/collections/:c/points/search', 'read', 'points.search', 'json'),
  rule('POST', '/collections/:c/points/search/batch', 'read', 'points.search-batch', 'json'),
  rule('POST', '/collections/:c/points/search/groups', 'read', 'points.search-groups', 'json'),
  rule('POST', '/collections/:c/points/search/matrix/pairs', 'read', 'points.search-matrix', 'json'),
  rule('POST', '/collections/:c/points/search/matrix/offsets', 'read', 'points.search-matrix', 'json'),
  rule('POST', '/collections/:c/points/recommend', 'read', 'points.recommend', 'json'),
  rule('POST', '/collections/:c/points/recommend/batch', 'read', 'points.recommend-batch', 'json'),
  rule('POST', '/collections/:c/points/recommend/groups', 'read', 'points.recommend-groups', 'json'),
  rule('POST', '/collections/:c/points/discover', 'read', 'points.discover', 'json'),
  rule('POST', '/collections/:c/points/discover/batch', 'read', 'points.discover-batch', 'json'),
  rule('POST', '/collections/:c/points/scroll', 'read', 'points.scroll', 'json'),
  rule('POST', '/collections/:c/points/count', 'read', 'points.count', 'json'),
  rule('POST', '/collections/:c/points/query', 'read', 'points.query', 'json'),
  rule('POST', '/collections/:c/points/query/batch', 'read', 'points.query-batch', 'json'),
  rule('POST', '/collections/:c/points/query/groups', 'read', 'points.query-groups', 'json'),
  rule('POST', '/collections/:c/facet', 'read', 'points.facet', 'json'),
  rule('PUT', '/collections/:c/points', 'write', 'points.upsert'),
  rule('POST', '/collections/:c/points/delete', 'write', 'points.delete'),
  rule('POST', '/collections/:c/points/payload', 'write', 'payload.set'),
  rule('PUT', '/collections/:c/points/payload', 'write', 'payload.overwrite'),
  rule('POST', '/collections/:c/points/payload/delete', 'write', 'payload.delete'),
  rule('POST', '/collections/:c/points/payload/clear', 'write', 'payload.clear'),
  rule('PUT', '/collections/:c/points/vectors', 'write', 'vectors.update'),
  rule('POST', '/collections/:c/points/vectors/delete', 'write', 'vectors.delete'),
  rule('POST', '/collections/:c/points/batch', 'write', 'points.batch'),
  // Collections create/update/delete, indexes, snapshots, aliases, cluster: admin by default.
];

// Chroma: the v2 API (tenants/databases) and the older v1 API.
const CHROMA_V2_COLL = '/api/v2/tenants/:t/databases/:d/collections';
const CHROMA: readonly RouteRule[] = [
  rule(READ_METHODS, '/api/v2', 'read', 'root'),
  rule(READ_METHODS, '/api/v2/heartbeat', 'read', 'heartbeat'),
  rule(READ_METHODS, '/api/v2/version', 'read', 'version'),
  rule(READ_METHODS, '/api/v2/healthcheck', 'read', 'health'),
  rule(READ_METHODS, '/api/v2/pre-flight-checks', 'read', 'pre-flight-checks'),
  rule(READ_METHODS, '/api/v2/auth/identity', 'read', 'identity'),
  rule(READ_METHODS, '/api/v2/tenants/:t', 'read', 'tenants.get'),
  rule(READ_METHODS, '/api/v2/tenants/:t/databases', 'read', 'databases.list'),
  rule(READ_METHODS, '/api/v2/tenants/:t/databases/:d', 'read', 'databases.get'),
  rule(READ_METHODS, CHROMA_V2_COLL, 'read', 'collections.list'),
  rule(READ_METHODS, '/api/v2/tenants/:t/databases/:d/collections_count', 'read', 'collections.count'),
  rule(READ_METHODS, `${CHROMA_V2_COLL}/:c`, 'read', 'collections.get'),
  rule(READ_METHODS, `${CHROMA_V2_COLL}/by-id/:c`, 'read', 'collections.get'),
  rule(READ_METHODS, '/api/v2/collections/:c', 'read', 'collections.get'),
  rule(READ_METHODS, `${CHROMA_V2_COLL}/:c/count`, 'read', 'records.count'),
  rule(READ_METHODS, `${CHROMA_V2_COLL}/:c/indexing_status`, 'read', 'collections.indexing-status'),
  rule(READ_METHODS, `${CHROMA_V2_COLL}/:c/fork_count`, 'read', 'collections.fork-count'),
  rule('POST', `${CHROMA_V2_COLL}/:c/get`, 'read', 'records.get', 'json'),
  rule('POST', `${CHROMA_V2_COLL}/:c/query`, 'read', 'records.query', 'json'),
  rule('POST', `${CHROMA_V2_COLL}/:c/search`, 'read', 'records.search', 'json'),
  rule('POST', `${CHROMA_V2_COLL}/:c/add`, 'write', 'records.add'),
  rule('POST', `${CHROMA_V2_COLL}/:c/upsert`, 'write', 'records.upsert'),
  rule('POST', `${CHROMA_V2_COLL}/:c/update`, 'write', 'records.update'),
  rule('POST', `${CHROMA_V2_COLL}/:c/delete`, 'write', 'records.delete'),
  rule(READ_METHODS, '/api/v1', 'read', 'root'),
  rule(READ_METHODS, '/api/v1/heartbeat', 'read', 'heartbeat'),
  rule(READ_METHODS, '/api/v1/version', 'read', 'version'),
  rule(READ_METHODS, '/api/v1/pre-flight-checks', 'read', 'pre-flight-checks'),
  rule(READ_METHODS, '/api/v1/tenants/:t', 'read', 'tenants.get'),
  rule(READ_METHODS, '/api/v1/databases/:d', 'read', 'databases.get'),
  rule(READ_METHODS, '/api/v1/collections', 'read', 'collections.list'),
  rule(READ_METHODS, '/api/v1/count_collections', 'read', 'collections.count'),
  rule(READ_METHODS, '/api/v1/collections/:c', 'read', 'collections.get'),
  rule(READ_METHODS, '/api/v1/collections/:c/count', 'read', 'records.count'),
  rule('POST', '/api/v1/collections/:c/get', 'read', 'records.get', 'json'),
  rule('POST', '/api/v1/collections/:c/query', 'read', 'records.query', 'json'),
  rule('POST', '/api/v1/collections/:c/add', 'write', 'records.add'),
  rule('POST', '/api/v1/collections/:c/upsert', 'write', 'records.upsert'),
  rule('POST', '/api/v1/collections/:c/update', 'write', 'records.update'),
  rule('POST', '/api/v1/collections/:c/delete', 'write', 'records.delete'),
  // Collection / tenant / database create, modify, delete, reset, fork: admin by default.
];

// Weaviate REST + GraphQL. GraphQL has no mutations in Weaviate (writes go through REST), so
// every GraphQL query is a read. Schema reads are `read` because every client reads the
// schema before it queries; changing the schema is admin.
const WEAVIATE: readonly RouteRule[] = [
  rule(READ_METHODS, '/v1/meta', 'read', 'meta'),
  rule(READ_METHODS, '/v1/.well-known/ready', 'read', 'health'),
  rule(READ_METHODS, '/v1/.well-known/live', 'read', 'health'),
  rule(READ_METHODS, '/v1/.well-known/openid-configuration', 'read', 'oidc-discovery'),
  rule('POST', '/v1/graphql', 'read', 'graphql', 'json'),
  rule('POST', '/v1/graphql/batch', 'read', 'graphql-batch', 'json'),
  rule(READ_METHODS, '/v1/schema', 'read', 'schema.get'),
  rule(READ_METHODS, '/v1/schema/:c', 'read', 'schema.get'),
  rule(READ_METHODS, '/v1/objects', 'read', 'objects.list'),
  rule(READ_METHODS, '/v1/objects/:id', 'read', 'objects.get'),
  rule(READ_METHODS, '/v1/objects/:c/:id', 'read', 'objects.get'),
  rule('POST', '/v1/objects', 'write', 'objects.create'),
  rule('POST', '/v1/objects/validate', 'read', 'objects.validate'),
  rule('PUT|PATCH|DELETE', '/v1/objects/:id', 'write', 'objects.update'),
  rule('PUT|PATCH|DELETE', '/v1/objects/:c/:id', 'write', 'objects.update'),
  rule('POST|PUT|DELETE', '/v1/objects/:c/:id/references/:prop', 'write', 'objects.references'),
  rule('POST|DELETE', '/v1/batch/objects', 'write', 'batch.objects'),
  rule('POST', '/v1/batch/references', 'write', 'batch.references'),
  // Schema changes, backups, nodes, cluster, classification, users: admin by default.
];

// Milvus RESTful API v2. Listing and describing collections is read (clients describe before
// they search); everything else under collections/ is admin.
const MILVUS_V = '/v2/vectordb';
const MILVUS: readonly RouteRule[] = [
  rule('POST', `${MILVUS_V}/entities/search`, 'read', 'entities.search', 'json'),
  rule('POST', `${MILVUS_V}/entities/advanced_search`, 'read', 'entities.hybrid-search', 'json'),
  rule('POST', `${MILVUS_V}/entities/hybrid_search`, 'read', 'entities.hybrid-search', 'json'),
  rule('POST', `${MILVUS_V}/entities/query`, 'read', 'entities.query', 'json'),
  rule('POST', `${MILVUS_V}/entities/get`, 'read', 'entities.get', 'json'),
  rule('POST', `${MILVUS_V}/entities/insert`, 'write', 'entities.insert'),
  rule('POST', `${MILVUS_V}/entities/upsert`, 'write', 'entities.upsert'),
  rule('POST', `${MILVUS_V}/entities/delete`, 'write', 'entities.delete'),
  rule('POST', `${MILVUS_V}/collections/list`, 'read', 'collections.list'),
  rule('POST', `${MILVUS_V}/collections/describe`, 'read', 'collections.describe'),
  rule('POST', `${MILVUS_V}/collections/has`, 'read', 'collections.has'),
  rule('POST', `${MILVUS_V}/collections/get_stats`, 'read', 'collections.stats'),
  rule('POST', `${MILVUS_V}/collections/get_load_state`, 'read', 'collections.load-state'),
  // collections/create, drop, rename, load, release, partitions, indexes, aliases, users, roles: admin by default.
];

// OpenSearch / Elasticsearch-compatible REST. `:c` is the index (or a comma list / pattern).
const OPENSEARCH: readonly RouteRule[] = [
  rule(READ_METHODS, '/', 'read', 'info'),
  rule('GET|POST', '/_search', 'read', 'search', 'json'),
  rule('GET|POST', '/:c/_search', 'read', 'search', 'json'),
  rule('GET|POST|DELETE', '/_search/scroll', 'read', 'search.scroll'),
  rule('GET|POST|DELETE', '/_search/scroll/:id', 'read', 'search.scroll'),
  rule('GET|POST', '/_msearch', 'read', 'msearch'),
  rule('GET|POST', '/:c/_msearch', 'read', 'msearch'),
  rule('GET|POST', '/_count', 'read', 'count'),
  rule('GET|POST', '/:c/_count', 'read', 'count'),
  rule('GET|POST', '/_mget', 'read', 'mget'),
  rule('GET|POST', '/:c/_mget', 'read', 'mget'),
  rule(READ_METHODS, '/:c/_doc/:id', 'read', 'doc.get'),
  rule(READ_METHODS, '/:c/_source/:id', 'read', 'doc.source'),
  rule('PUT|POST|DELETE', '/:c/_doc/:id', 'write', 'doc.write'),
  rule('POST', '/:c/_doc', 'write', 'doc.index'),
  rule('PUT|POST', '/:c/_create/:id', 'write', 'doc.create'),
  rule('POST', '/:c/_update/:id', 'write', 'doc.update'),
  // _bulk may name other indices in its body; the path index is only a default.
  rule('POST|PUT', '/_bulk', 'write', 'bulk'),
  rule('POST|PUT', '/:c/_bulk', 'write', 'bulk'),
  rule('POST', '/:c/_delete_by_query', 'write', 'delete-by-query'),
  rule('POST', '/:c/_update_by_query', 'write', 'update-by-query'),
  // Index create/delete, _mapping, _settings, _cat, _cluster, _nodes, _snapshot: admin by default.
];

const TABLES: Record<Exclude<HttpFlavor, 'generic'>, readonly RouteRule[]> = {
  qdrant: QDRANT,
  chroma: CHROMA,
  weaviate: WEAVIATE,
  milvus: MILVUS,
  opensearch: OPENSEARCH,
};

/** Why a path cannot be classified safely: percent-encoded separators or dot segments could make the upstream route differ from ours. */
export function unsafePathReason(path: string): string | null {
  if (!path.startsWith('/')) return 'the request target must be an absolute path';
  if (/%(2f|5c|2e|00)/i.test(path)) return 'percent-encoded "/", "\\", "." or NUL in the path is refused';
  if (path.includes('\\')) return 'a backslash in the path is refused';
  if (/\/\/|(^|\/)\.\.?(\/|$)/.test(path)) return 'empty or dot ("." / "..") path segments are refused';
  // RFC 3986 path characters only; anything else means a client is trying something odd.
  if (!/^[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/.test(path)) return 'the path has characters outside RFC 3986';
  return null;
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * Classifies one request. `path` is the raw path without the query (check it with
 * `unsafePathReason` first); `method` is upper-case.
 *
 * @example
 * classifyRoute('qdrant', 'POST', '/collections/docs/points/search')
 * // { access: 'read', operation: 'points.search', collection: 'docs', inspect: 'json' }
 */
export function classifyRoute(flavor: HttpFlavor, method: string, path: string): Readonly<RouteDecision> {
  if (path.length > ROUTE_CACHE_MAX_PATH) return classify(flavor, method, path);
  const key = `${flavor} ${method} ${path}`;
  const hit = routeCache.get(key);
  if (hit !== undefined) return hit;
  const decision = Object.freeze(classify(flavor, method, path));
  if (routeCache.size >= ROUTE_CACHE_MAX_ENTRIES) routeCache.clear();
  routeCache.set(key, decision);
  return decision;
}

/**
 * Decisions for recent (flavor, method, path) triples, per thread: clients repeat a few routes
 * (search and upsert on the same collections), and a decision depends on nothing else. Shared
 * decisions are frozen. Emptied when full; long paths are not kept.
 */
const routeCache = new Map<string, Readonly<RouteDecision>>();
const ROUTE_CACHE_MAX_ENTRIES = 1024;
const ROUTE_CACHE_MAX_PATH = 256;

function classify(flavor: HttpFlavor, method: string, path: string): RouteDecision {
  const m = method.toUpperCase();
  if (flavor === 'generic') {
    return { access: m === 'GET' || m === 'HEAD' ? 'read' : 'write', operation: m.toLowerCase(), collection: null, inspect: null };
  }
  const segments = path.split('/').filter((s) => s !== '');
  // A trailing slash is the same route: most of these servers treat it so, and unknown means admin anyway.
  for (const r of TABLES[flavor]) {
    if (r.pattern.length !== segments.length || !r.methods.includes(m)) continue;
    let collection: string | null = null;
    let ok = true;
    for (let i = 0; i < segments.length; i++) {
      const p = r.pattern[i]!;
      const s = segments[i]!;
      if (p.startsWith(':')) {
        // A capture never matches an API keyword segment (e.g. `_search` as an index name).
        if (flavor === 'opensearch' && s.startsWith('_')) {
          ok = false;
          break;
        }
        if (p === ':c') collection = decodeSegment(s);
      } else if (p !== s) {
        ok = false;
        break;
      }
    }
    if (ok) return { access: r.access, operation: r.operation, collection, inspect: r.inspect ?? null };
  }
  return { access: 'admin', operation: 'unlisted', collection: guessCollection(flavor, segments), inspect: null };
}

/** The collection an unlisted (admin) route names, so refusals and a later per-collection policy can say which. */
function guessCollection(flavor: HttpFlavor, segments: string[]): string | null {
  switch (flavor) {
    case 'qdrant':
      return segments[0] === 'collections' && segments[1] && segments[1] !== 'aliases' ? decodeSegment(segments[1]) : null;
    case 'chroma': {
      const i = segments.indexOf('collections');
      return i >= 0 && segments[i + 1] ? decodeSegment(segments[i + 1]!) : null;
    }
    case 'weaviate':
      return segments[0] === 'v1' && segments[1] === 'schema' && segments[2] ? decodeSegment(segments[2]) : null;
    case 'opensearch':
      return segments[0] && !segments[0].startsWith('_') ? decodeSegment(segments[0]) : null;
    default:
      return null;
  }
}

const RANK: Record<AccessLevel, number> = { read: 1, write: 2, admin: 3 };

/** True when a principal granted `granted` may perform a request classified `needed`. */
export function accessAllows(granted: AccessLevel, needed: AccessLevel): boolean {
  return RANK[granted] >= RANK[needed];
}
