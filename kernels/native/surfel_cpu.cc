// Surfel (2DGS) compositing on the CPU as two XLA FFI custom calls: forward and backward.
//
// The maths is the dense oracle's (kernels/reference.py) pair by pair; what differs is only
// which pairs are evaluated. Each view's valid splats are sorted by centre depth (ties by
// index; a radix sort), packed into records in that order and binned into square tiles with
// the rectangles of ga_jax.rendering.tiles (a counting sort, so every tile's list stays in
// depth order). A tile keeps its pixels' state in local arrays and walks its list front to
// back; for each splat it evaluates only the rows of the splat's screen box (`extents` is the
// radius beyond which alpha < 1/255, so the pairs outside are skipped anyway), 16 pixels of a
// row at once in vector registers. A tile stops once every ray in it has stopped.
//
// The backward pass rebuilds the same lists (cheap) and walks them back to front, as the
// reference CUDA backward does: T_i = T_{i+1} / (1 - alpha_i) from the final transmittance,
// dL/dalpha_i = T_i phi_i - S_i / (1 - alpha_i) with S_i the sum of w_j phi_j over later
// pairs (phi: kernels/xla_composite.py), then the chain rule through the pair's ray-splat
// intersection by hand. Tiles run on `threads` threads with a fixed tile-to-thread
// assignment; gradients are accumulated per thread and summed in thread order, so they are
// the same on every run.
//
// Shapes: splat fields have leading dims [..., N] (flattened to V views); images [V, H, W].

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr float kFar = 1e6f;  // kernels/numerics.py: (u, v) for rays nearly parallel to a splat
constexpr float kFarDepth = 1e12f;  // kernels/numerics.py: bound on such rays' depth term
constexpr int kGeom = 12;     // means2d (2), transform rows (9), opacity (1)
constexpr int kMaxTile = 64;  // tile edge limit: a tile's state should stay in the L1/L2 cache
constexpr int kLanes = 16;    // pixels evaluated together (one AVX-512 or two AVX2 vectors)

struct Params {
  int height, width, tile, channels;
  float near_plane, far_plane, alpha_max, alpha_min, trans_min, filter_inv_square;
  int rows() const { return (height + tile - 1) / tile; }
  int cols() const { return (width + tile - 1) / tile; }
};

struct Splats {  // one view
  const float* means2d;     // [N, 2]
  const float* transforms;  // [N, 9]
  const float* depths;      // [N]
  const float* normals;     // [N, 3]
  const float* opacities;   // [N]
  const float* colors;      // [N, D]
  const float* extents;     // [N, 2]
  const uint8_t* valid;     // [N]
  int num;
};

// One view's valid splats in depth order, each packed into one record (tiles visit their
// splats in this order, so the records stream through the cache; gathering six fields of
// randomly ordered splats per tile pair was the forward pass's main cost), and the tile lists
// ranks[start[t] .. start[t + 1]) of record indices, ascending.
struct Bins {
  // Record: centre (2), transform rows (9), opacity (1) = kGeom; extents (2); normal (3);
  // colour (D).
  int record_len;
  std::vector<int> order;  // record index -> splat index
  std::vector<float> records;
  std::vector<int> start;
  std::vector<int> ranks;
  const float* record(int rank) const { return records.data() + static_cast<int64_t>(record_len) * rank; }
};
constexpr int kExtents = kGeom, kNormal = kGeom + 2, kColor = kGeom + 5;
constexpr int kPrefetch = 8;  // records fetched ahead in a tile's list

inline void Prefetch(const float* record) {
  __builtin_prefetch(record);
  __builtin_prefetch(record + 16);  // a record spans two cache lines
}

// The tile rectangle of ga_jax.rendering.tiles.tile_rects: [x0, x1) x [y0, y1) in tiles.
inline bool TileRect(const Splats& s, int i, const Params& p, int rect[4]) {
  const float ts = static_cast<float>(p.tile);
  const float grid[2] = {static_cast<float>(p.cols()), static_cast<float>(p.rows())};
  for (int a = 0; a < 2; ++a) {
    const float m = s.means2d[2 * i + a], e = s.extents[2 * i + a];
    if (!std::isfinite(m) || !std::isfinite(e)) return false;
    const float lo = std::clamp(std::floor((m - e) / ts), 0.0f, grid[a]);
    const float hi = std::clamp(std::floor((m + e) / ts) + 1.0f, 0.0f, grid[a]);
    rect[a] = static_cast<int>(lo);
    rect[a + 2] = std::max(static_cast<int>(hi), rect[a]);
  }
  return rect[2] > rect[0] && rect[3] > rect[1];
}

// Valid splats sorted by depth, ties by index: a stable LSD radix sort on the float's bits
// mapped to an order-preserving unsigned key (std::stable_sort was ~10 ms at 73,728 splats).
std::vector<int> DepthOrder(const Splats& s) {
  std::vector<uint32_t> key, key_tmp;
  std::vector<int> order, order_tmp;
  for (int i = 0; i < s.num; ++i) {
    if (!s.valid[i]) continue;
    uint32_t bits;
    std::memcpy(&bits, &s.depths[i], sizeof(bits));
    key.push_back(bits & 0x80000000u ? ~bits : bits | 0x80000000u);
    order.push_back(i);
  }
  const size_t n = order.size();
  key_tmp.resize(n);
  order_tmp.resize(n);
  for (int shift = 0; shift < 32; shift += 8) {
    size_t count[257] = {0};
    for (size_t k = 0; k < n; ++k) ++count[((key[k] >> shift) & 255u) + 1];
    for (int b = 0; b < 256; ++b) count[b + 1] += count[b];
    for (size_t k = 0; k < n; ++k) {
      const size_t dst = count[(key[k] >> shift) & 255u]++;
      key_tmp[dst] = key[k];
      order_tmp[dst] = order[k];
    }
    key.swap(key_tmp);
    order.swap(order_tmp);
  }
  return order;
}

int64_t BinView(const Splats& s, const Params& p, Bins& bins) {
  const int num_tiles = p.rows() * p.cols(), D = p.channels;
  bins.order = DepthOrder(s);
  const int num = static_cast<int>(bins.order.size());
  bins.record_len = kColor + D;
  bins.records.resize(static_cast<size_t>(num) * bins.record_len);
  for (int k = 0; k < num; ++k) {
    const int i = bins.order[k];
    float* rec = bins.records.data() + static_cast<int64_t>(bins.record_len) * k;
    rec[0] = s.means2d[2 * i];
    rec[1] = s.means2d[2 * i + 1];
    std::memcpy(rec + 2, s.transforms + 9 * i, 9 * sizeof(float));
    rec[11] = s.opacities[i];
    rec[kExtents] = s.extents[2 * i];
    rec[kExtents + 1] = s.extents[2 * i + 1];
    std::memcpy(rec + kNormal, s.normals + 3 * i, 3 * sizeof(float));
    std::memcpy(rec + kColor, s.colors + static_cast<int64_t>(D) * i, D * sizeof(float));
  }
  std::vector<int> rects(4 * static_cast<size_t>(num));
  bins.start.assign(num_tiles + 1, 0);
  for (int k = 0; k < num; ++k) {
    int* r = &rects[4 * k];
    if (!TileRect(s, bins.order[k], p, r)) {
      r[0] = r[2] = r[1] = r[3] = 0;
      continue;
    }
    for (int ty = r[1]; ty < r[3]; ++ty)
      for (int tx = r[0]; tx < r[2]; ++tx) ++bins.start[ty * p.cols() + tx + 1];
  }
  for (int t = 0; t < num_tiles; ++t) bins.start[t + 1] += bins.start[t];
  bins.ranks.resize(bins.start[num_tiles]);
  std::vector<int> fill(bins.start.begin(), bins.start.end() - 1);
  for (int k = 0; k < num; ++k) {
    const int* r = &rects[4 * k];
    for (int ty = r[1]; ty < r[3]; ++ty)
      for (int tx = r[0]; tx < r[2]; ++tx) bins.ranks[fill[ty * p.cols() + tx]++] = k;
  }
  return bins.start[num_tiles];
}

// Runs fn(item, thread) for item in [0, count) on `threads` threads, item i on thread
// i % threads: a fixed assignment, so the per-thread gradient sums (and so the gradients) are
// the same on every run.
template <typename Fn>
void ParallelFor(int count, int threads, Fn fn) {
  threads = std::max(1, std::min(threads, count));
  auto work = [&](int thread) {
    for (int item = thread; item < count; item += threads) fn(item, thread);
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
}

// kLanes pixels of a row at once, as GCC vector-extension types: compiled to AVX-512 (one
// register) or AVX2 (two) by -march=native. Comparisons give I masks (-1 true, 0 false) and
// `mask ? a : b` selects per lane. (Auto-vectorisation of the scalar form was unreliable:
// GCC 12 gave up on these loops for alias checks, bool selects and bit casts.)
typedef float F __attribute__((vector_size(4 * kLanes)));
typedef int32_t I __attribute__((vector_size(4 * kLanes)));

inline F LoadF(const float* ptr) {
  F v;
  std::memcpy(&v, ptr, sizeof(v));
  return v;
}
inline I LoadI(const int32_t* ptr) {
  I v;
  std::memcpy(&v, ptr, sizeof(v));
  return v;
}
inline void Store(float* ptr, F v) { std::memcpy(ptr, &v, sizeof(v)); }
inline void Store(int32_t* ptr, I v) { std::memcpy(ptr, &v, sizeof(v)); }
inline F Splat(float x) { return F{} + x; }
inline F Zero() { return F{}; }
inline F Abs(F x) { return x < 0.0f ? -x : x; }
inline F Max(F a, F b) { return a > b ? a : b; }
inline F Min(F a, F b) { return a < b ? a : b; }
inline bool Any(I mask) {
  uint64_t words[sizeof(I) / 8];
  std::memcpy(words, &mask, sizeof(I));
  uint64_t any = 0;
  for (uint64_t w : words) any |= w;
  return any != 0;
}

// Sum of the lanes in a fixed order (deterministic).
inline float LaneSum(F v) {
  float x[kLanes];
  std::memcpy(x, &v, sizeof(x));
  for (int width = kLanes / 2; width >= 1; width /= 2)
    for (int j = 0; j < width; ++j) x[j] += x[j + width];
  return x[0];
}

// exp(x) per lane for x <= 0: x = -m ln2 + r with m an integer, |r| <= ln2 / 2; e^r by its
// degree-7 Taylor polynomial (nested), 2^-m from the exponent bits. Relative error < 1e-7
// (measured against double exp). Below -87, e^x < 2e-38: the alpha it gives is skipped anyway.
inline F Exp(F x) {
  x = x < -87.0f ? Splat(-87.0f) : x;
  const I m = __builtin_convertvector(x * -1.44269504f + 0.5f, I);  // >= 0: truncation rounds
  const F mf = __builtin_convertvector(m, F);
  const F r = (x + mf * 0.693145752f) + mf * 1.42860677e-6f;  // ln 2 = hi + lo
  F poly = Splat(1.0f / 5040.0f);
  poly = poly * r + 1.0f / 720.0f;
  poly = poly * r + 1.0f / 120.0f;
  poly = poly * r + 1.0f / 24.0f;
  poly = poly * r + 1.0f / 6.0f;
  poly = poly * r + 0.5f;
  poly = poly * r + 1.0f;
  poly = poly * r + 1.0f;
  const I bits = (127 - m) << 23;
  return poly * (F)bits;  // GCC: a cast between same-size vector types keeps the bits
}

// Pixel centres x + 0.5 of a block's lanes, relative to the block's first pixel.
inline F LaneCentres() {
  F v;
  for (int j = 0; j < kLanes; ++j) v[j] = j + 0.5f;
  return v;
}

struct RowConst {  // what a splat's row shares: l = py T_w - T_v, dy = centre y - py
  float l0, l1, l2, dy;
};

inline RowConst MakeRow(const float* g, float py) {
  return RowConst{py * g[8] - g[5], py * g[9] - g[6], py * g[10] - g[7], g[1] - py};
}

// One splat (geometry g: centre, rows T_u, T_v, T_w, opacity) at a block of pixel centres px,
// step by step as kernels/reference.py, keeping what the backward pass needs.
struct Lanes {
  F k0, k1, k2, q0, q1, q2, div, inv, u, v, dx, gauss, alpha, z;
  I far, use_3d, clamped;
};

inline Lanes EvalLanes(const float* g, const RowConst& row, F px, const Params& p) {
  Lanes e;
  const float tw0 = g[8], tw1 = g[9], tw2 = g[10];
  e.k0 = px * tw0 - g[2];
  e.k1 = px * tw1 - g[3];
  e.k2 = px * tw2 - g[4];
  e.q0 = e.k1 * row.l2 - e.k2 * row.l1;
  e.q1 = e.k2 * row.l0 - e.k0 * row.l2;
  e.q2 = e.k0 * row.l1 - e.k1 * row.l0;
  // kernels/numerics.py: rays nearly parallel to the splat (this also covers q2 == 0).
  e.far = Abs(e.q2) * kFar <= Max(Abs(e.q0), Abs(e.q1));
  e.div = e.far ? Splat(1.0f) : e.q2;
  e.inv = 1.0f / e.div;  // one division instead of two (u, v differ from q / q2 by ~1 ulp)
  e.u = e.far ? Splat(kFar) : e.q0 * e.inv;
  e.v = e.far ? Splat(kFar) : e.q1 * e.inv;
  const F rho3d = e.u * e.u + e.v * e.v;
  e.dx = g[0] - px;
  const F rho2d = p.filter_inv_square * (e.dx * e.dx + row.dy * row.dy);
  e.use_3d = rho3d <= rho2d;
  const F rho = e.use_3d ? rho3d : rho2d;
  // The hit depth for every pair (the reference at e0ed020), near test below; far pairs take
  // it from q (kernels/numerics.py hit_depth). They are rare: skip the division otherwise.
  F depth_uv = e.u * tw0 + e.v * tw1;
  if (Any(e.far)) {
    const F q2 = e.q2 == 0.0f ? Splat(1.0f) : e.q2;
    const F far_term = (e.q0 * tw0 + e.q1 * tw1) / q2;
    depth_uv = e.far ? Min(Max(far_term, Splat(-kFarDepth)), Splat(kFarDepth)) : depth_uv;
  }
  const F hit_z = depth_uv + tw2;
  e.gauss = Exp(-0.5f * rho);
  const F raw = g[11] * e.gauss;
  e.clamped = raw > p.alpha_max;
  const F a = e.clamped ? Splat(p.alpha_max) : raw;
  const I keep = (e.q2 != 0.0f) & (hit_z >= p.near_plane) & (a >= p.alpha_min);
  e.alpha = keep ? a : Zero();
  e.z = keep ? hit_z : Splat(1.0f);
  return e;
}

// The rows [y0, y1) and the lane blocks [x0, x1) (x0 a multiple of kLanes from the tile's
// left edge) of splat i's screen box inside a tile. Pixel centres within [m - e, m + e],
// widened by 1e-3 px against rounding in `extents`. Every lane of a block is evaluated, as the
// XLA backend evaluates every pixel of a tile: outside the box alpha is below 1/255 and the
// pair is skipped there.
inline bool BoxInTile(const float* rec, int tx0, int ty0, int tx1, int ty1, int& y0, int& y1,
                      int& x0, int& x1) {
  int lo[2], hi[2];
  for (int a = 0; a < 2; ++a) {
    const float m = rec[a], e = rec[kExtents + a] + 1e-3f;
    const float lo_tile = static_cast<float>(a == 0 ? tx0 : ty0);
    const float hi_tile = static_cast<float>(a == 0 ? tx1 : ty1);
    lo[a] = static_cast<int>(std::clamp(std::ceil(m - e - 0.5f), lo_tile, hi_tile));
    hi[a] = static_cast<int>(std::clamp(std::floor(m + e - 0.5f) + 1.0f, lo_tile, hi_tile));
  }
  y0 = lo[1];
  y1 = hi[1];
  x0 = tx0 + (lo[0] - tx0) / kLanes * kLanes;
  x1 = hi[0];
  return y1 > y0 && x1 > lo[0];
}

// Tile-local pixel state: rows of `stride` (tile size rounded up to kLanes) lanes; lanes
// outside the tile or the image are never live.
struct TileGrid {
  int ts, stride, tx0, ty0, tx1, ty1;
  TileGrid(const Params& p, int tile)
      : ts(p.tile),
        stride((p.tile + kLanes - 1) / kLanes * kLanes),
        tx0((tile % p.cols()) * p.tile),
        ty0((tile / p.cols()) * p.tile),
        tx1(std::min(tx0 + p.tile, p.width)),
        ty1(std::min(ty0 + p.tile, p.height)) {}
  int size() const { return stride * ts; }
  int index(int x, int y) const { return (y - ty0) * stride + (x - tx0); }
};

// fn(q, pix) for every pixel of the tile inside the image: q its tile-local index, pix its
// index in the [H, W] image.
template <typename Fn>
void ForEachPixel(const TileGrid& grid, int width, Fn fn) {
  for (int y = grid.ty0; y < grid.ty1; ++y)
    for (int x = grid.tx0; x < grid.tx1; ++x)
      fn(grid.index(x, y), static_cast<int64_t>(y) * width + x);
}

// One zeroed allocation split into consecutive float arrays of the given lengths (the total
// is derived from them, so adding a field cannot under-allocate).
class Arrays {
 public:
  explicit Arrays(std::initializer_list<int> lengths) {
    size_t total = 0;
    for (int length : lengths) starts_.push_back(total), total += length;
    data_.assign(total, 0.0f);
  }
  float* operator[](size_t i) { return data_.data() + starts_[i]; }

 private:
  std::vector<size_t> starts_;
  std::vector<float> data_;
};

struct ForwardOut {  // one view
  float *color, *alpha, *depth, *median, *normal, *distortion, *final_t, *m1, *m2;
  int32_t *last, *median_index;
};

void ForwardTile(const Bins& bins, const Params& p, int tile, ForwardOut& o) {
  const TileGrid grid(p, tile);
  const int D = p.channels, n = grid.size();
  // Structure of arrays: the lanes of a block are contiguous in every field.
  Arrays arrays({n, n, n, n, n, n, 3 * n, D * n});
  float* trans = arrays[0];
  float* depth = arrays[1];
  float* m1 = arrays[2];
  float* m2 = arrays[3];
  float* dist = arrays[4];
  float* median = arrays[5];
  float* normal = arrays[6];  // [3][n]
  float* color = arrays[7];  // [D][n]
  std::vector<int32_t> last(n, -1), med_k(n, -1), live(n, 0);
  std::fill(trans, trans + n, 1.0f);
  int active = 0;
  ForEachPixel(grid, p.width, [&](int q, int64_t) {
    live[q] = -1;
    ++active;
  });
  const float m_scale = p.far_plane / (p.far_plane - p.near_plane);
  const F centres = LaneCentres();
  const int begin = bins.start[tile], end = bins.start[tile + 1];
  for (int k = 0; k < end - begin && active > 0; ++k) {
    // A tile's records are spread over the whole depth order: fetch ahead of use.
    if (k + kPrefetch < end - begin) Prefetch(bins.record(bins.ranks[begin + k + kPrefetch]));
    const float* g = bins.record(bins.ranks[begin + k]);
    int y0, y1, x0, x1;
    if (!BoxInTile(g, grid.tx0, grid.ty0, grid.tx1, grid.ty1, y0, y1, x0, x1)) continue;
    const float* nrm = g + kNormal;
    const float* col = g + kColor;
    for (int y = y0; y < y1; ++y) {
      const RowConst row = MakeRow(g, y + 0.5f);
      for (int xb = x0; xb < x1; xb += kLanes) {
        const int q = grid.index(xb, y);
        const I alive = LoadI(live.data() + q);
        if (!Any(alive)) continue;  // every ray of this block has stopped
        const Lanes e = EvalLanes(g, row, centres + static_cast<float>(xb), p);
        const F t = LoadF(trans + q);
        const F test = t * (1.0f - e.alpha);
        const I use = (e.alpha > 0.0f) & alive;
        const I stop = use & (test < p.trans_min);
        const I contrib = use & ~stop;
        for (int j = 0; j < kLanes; ++j) active += stop[j];  // stop is -1 where a ray ends
        Store(live.data() + q, alive & ~stop);
        const F w = contrib ? e.alpha * t : Zero();
        const F m = m_scale * (1.0f - p.near_plane / e.z);
        const F m1_q = LoadF(m1 + q), m2_q = LoadF(m2 + q);
        Store(dist + q, LoadF(dist + q) + w * (m * m * (1.0f - t) + m2_q - 2.0f * m * m1_q));
        Store(depth + q, LoadF(depth + q) + w * e.z);
        Store(m1 + q, m1_q + w * m);
        Store(m2 + q, m2_q + w * m * m);
        const I at_median = contrib & (t > 0.5f);
        Store(median + q, at_median ? e.z : LoadF(median + q));
        Store(med_k.data() + q, at_median ? k : LoadI(med_k.data() + q));
        Store(last.data() + q, contrib ? k : LoadI(last.data() + q));
        Store(trans + q, contrib ? test : t);
        for (int a = 0; a < 3; ++a) Store(normal + a * n + q, LoadF(normal + a * n + q) + w * nrm[a]);
        for (int a = 0; a < D; ++a) Store(color + a * n + q, LoadF(color + a * n + q) + w * col[a]);
      }
    }
  }
  ForEachPixel(grid, p.width, [&](int q, int64_t pix) {
    o.alpha[pix] = 1.0f - trans[q];
    o.final_t[pix] = trans[q];
    o.depth[pix] = depth[q];
    o.median[pix] = median[q];
    o.distortion[pix] = dist[q];
    o.m1[pix] = m1[q];
    o.m2[pix] = m2[q];
    o.last[pix] = last[q];
    o.median_index[pix] = med_k[q];
    for (int a = 0; a < 3; ++a) o.normal[3 * pix + a] = normal[a * n + q];
    for (int a = 0; a < D; ++a) o.color[D * pix + a] = color[a * n + q];
  });
}

struct BackwardIn {  // one view: forward residuals and output cotangents
  const float *final_t, *alpha, *m1, *m2;
  const int32_t *last, *median_index;
  const float *g_color, *g_alpha, *g_depth, *g_median, *g_normal, *g_distortion;
};

// Adds this tile's share of dL/d(splat) to grad rows [records, kGeom + 3 + D] (geom, normal,
// colour), indexed like the records.
void BackwardTile(const Bins& bins, const Params& p, int tile,
                  const BackwardIn& in, float* grad) {
  const TileGrid grid(p, tile);
  const int D = p.channels, n = grid.size(), row_len = kGeom + 3 + D;
  // Per pixel: running T and S, then the constant residuals and cotangents (lanes outside
  // the tile keep last = -1 and never contribute).
  Arrays arrays({n, n, n, n, n, n, n, n, n, 3 * n, D * n});
  float* trans = arrays[0];
  float* suffix = arrays[1];
  float* w_tot = arrays[2];
  float* m1_tot = arrays[3];
  float* m2_tot = arrays[4];
  float* g_w = arrays[5];
  float* g_d = arrays[6];
  float* g_dist = arrays[7];
  float* g_med = arrays[8];
  float* g_n = arrays[9];  // [3][n]
  float* g_c = arrays[10];  // [D][n]
  std::vector<int32_t> last(n, -1), med_k(n, -1);
  int k_max = -1;
  ForEachPixel(grid, p.width, [&](int q, int64_t pix) {
    trans[q] = in.final_t[pix];
    w_tot[q] = in.alpha[pix];
    m1_tot[q] = in.m1[pix];
    m2_tot[q] = in.m2[pix];
    g_w[q] = in.g_alpha[pix];
    g_d[q] = in.g_depth[pix];
    g_dist[q] = in.g_distortion[pix];
    g_med[q] = in.g_median[pix];
    for (int a = 0; a < 3; ++a) g_n[a * n + q] = in.g_normal[3 * pix + a];
    for (int a = 0; a < D; ++a) g_c[a * n + q] = in.g_color[D * pix + a];
    last[q] = in.last[pix];
    med_k[q] = in.median_index[pix];
    k_max = std::max(k_max, last[q]);
  });
  const float m_scale = p.far_plane / (p.far_plane - p.near_plane);
  const F centres = LaneCentres();
  std::vector<F> acc(row_len);  // one splat's gradient per lane, summed over its blocks
  const int begin = bins.start[tile];
  for (int k = k_max; k >= 0; --k) {
    if (k >= kPrefetch) Prefetch(bins.record(bins.ranks[begin + k - kPrefetch]));
    const int rank = bins.ranks[begin + k];
    const float* g = bins.record(rank);
    int y0, y1, x0, x1;
    if (!BoxInTile(g, grid.tx0, grid.ty0, grid.tx1, grid.ty1, y0, y1, x0, x1)) continue;
    const float* nrm = g + kNormal;
    const float* col = g + kColor;
    const float tw0 = g[8], tw1 = g[9];
    std::fill(acc.begin(), acc.end(), Zero());
    for (int y = y0; y < y1; ++y) {
      const RowConst row = MakeRow(g, y + 0.5f);
      const float py = y + 0.5f;
      for (int xb = x0; xb < x1; xb += kLanes) {
        const int q = grid.index(xb, y);
        const I reached = k <= LoadI(last.data() + q);
        if (!Any(reached)) continue;  // no ray of this block composited splat k
        const F px = centres + static_cast<float>(xb);
        const Lanes e = EvalLanes(g, row, px, p);
        const I contrib = (e.alpha > 0.0f) & reached;
        const F one_minus = 1.0f - e.alpha;
        const F t_after = LoadF(trans + q);
        const F t = contrib ? t_after / one_minus : t_after;
        const F w = contrib ? e.alpha * t : Zero();
        const F m = m_scale * (1.0f - p.near_plane / e.z);
        const F w_q = LoadF(w_tot + q), m1_q = LoadF(m1_tot + q), m2_q = LoadF(m2_tot + q);
        const F gd_q = LoadF(g_d + q), gdist_q = LoadF(g_dist + q);
        F phi = LoadF(g_w + q) + gd_q * e.z + gdist_q * (m2_q + w_q * m * m - 2.0f * m * m1_q);
        for (int a = 0; a < 3; ++a) {
          const F g_na = LoadF(g_n + a * n + q);
          phi += g_na * nrm[a];
          acc[kGeom + a] += w * g_na;
        }
        for (int a = 0; a < D; ++a) {
          const F g_ca = LoadF(g_c + a * n + q);
          phi += g_ca * col[a];
          acc[kGeom + 3 + a] += w * g_ca;
        }
        const F s_q = LoadF(suffix + q);
        const F g_alpha = contrib ? t * phi - s_q / one_minus : Zero();
        Store(suffix + q, s_q + w * phi);
        Store(trans + q, t);
        const F dm_dz = m_scale * p.near_plane / (e.z * e.z);
        const I at_median = contrib & (LoadI(med_k.data() + q) == k);
        const F g_z = w * (gd_q + gdist_q * 2.0f * (w_q * m - m1_q) * dm_dz) +
                      (at_median ? LoadF(g_med + q) : Zero());
        // alpha = opacity * gauss unless clamped; rho = rho3d (3D hit) or rho2d (filter).
        const I open = contrib & ~e.clamped;
        const F g_rho = open ? -0.5f * e.alpha * g_alpha : Zero();
        acc[11] += open ? g_alpha * e.gauss : Zero();
        const F s2 = e.use_3d ? Zero() : 2.0f * p.filter_inv_square * g_rho;
        acc[0] += s2 * e.dx;
        acc[1] += s2 * row.dy;
        // z = u tw0 + v tw1 + tw2 for every pair; for far pairs u, v and the first two terms
        // are constants (kernels/numerics.py).
        const I near_ray = ~e.far;
        const F g_zq = near_ray ? g_z : Zero();
        const F g_u = near_ray ? (e.use_3d ? 2.0f * e.u * g_rho : Zero()) + g_z * tw0 : Zero();
        const F g_v = near_ray ? (e.use_3d ? 2.0f * e.v * g_rho : Zero()) + g_z * tw1 : Zero();
        const F gq0 = g_u * e.inv, gq1 = g_v * e.inv;
        const F gq2 = -(g_u * e.u + g_v * e.v) * e.inv;
        // q = k x l: dL/dk = l x gq, dL/dl = gq x k; k = px tw - tu, l = py tw - tv.
        const F gk0 = row.l1 * gq2 - row.l2 * gq1;
        const F gk1 = row.l2 * gq0 - row.l0 * gq2;
        const F gk2 = row.l0 * gq1 - row.l1 * gq0;
        const F gl0 = gq1 * e.k2 - gq2 * e.k1;
        const F gl1 = gq2 * e.k0 - gq0 * e.k2;
        const F gl2 = gq0 * e.k1 - gq1 * e.k0;
        acc[2] -= gk0;
        acc[3] -= gk1;
        acc[4] -= gk2;
        acc[5] -= gl0;
        acc[6] -= gl1;
        acc[7] -= gl2;
        acc[8] += px * gk0 + py * gl0 + g_zq * e.u;
        acc[9] += px * gk1 + py * gl1 + g_zq * e.v;
        acc[10] += px * gk2 + py * gl2 + g_z;
      }
    }
    float* out = grad + static_cast<int64_t>(row_len) * rank;
    for (int a = 0; a < row_len; ++a) out[a] += LaneSum(acc[a]);
  }
}

// ---------------------------------------------------------------------------------------
// FFI glue.

template <ffi::DataType T>
int64_t Count(const ffi::Buffer<T>& b) {
  return static_cast<int64_t>(b.element_count());
}

ffi::Error ReadSplats(ffi::Buffer<ffi::F32> means2d, ffi::Buffer<ffi::F32> transforms,
                      ffi::Buffer<ffi::F32> depths, ffi::Buffer<ffi::F32> normals,
                      ffi::Buffer<ffi::F32> opacities, ffi::Buffer<ffi::F32> colors,
                      ffi::Buffer<ffi::F32> extents, ffi::Buffer<ffi::U8> valid, int64_t views,
                      int64_t& num, int64_t& channels, std::vector<Splats>& out) {
  // views comes from the image buffers: with N = 0 the splats cannot tell it.
  auto dims = opacities.dimensions();
  if (dims.size() < 1) return ffi::Error::InvalidArgument("opacities: expected [..., N]");
  num = dims.back();
  if (Count(opacities) != views * num)
    return ffi::Error::InvalidArgument("opacities: leading dims do not match the images' views");
  auto cdims = colors.dimensions();
  channels = cdims.size() ? cdims.back() : 0;
  const int64_t vn = views * num;
  const std::pair<const char*, int64_t> checks[] = {
      {"means2d", Count(means2d) - 2 * vn},     {"transforms", Count(transforms) - 9 * vn},
      {"depths", Count(depths) - vn},           {"normals", Count(normals) - 3 * vn},
      {"colors", Count(colors) - channels * vn}, {"extents", Count(extents) - 2 * vn},
      {"valid", Count(valid) - vn}};
  for (const auto& [name, diff] : checks) {
    if (diff != 0)
      return ffi::Error::InvalidArgument(std::string(name) +
                                         ": element count does not match [V, N] splats");
  }
  out.resize(views);
  for (int64_t v = 0; v < views; ++v) {
    out[v] = Splats{means2d.typed_data() + 2 * num * v,
                    transforms.typed_data() + 9 * num * v,
                    depths.typed_data() + num * v,
                    normals.typed_data() + 3 * num * v,
                    opacities.typed_data() + num * v,
                    colors.typed_data() + channels * num * v,
                    extents.typed_data() + 2 * num * v,
                    valid.typed_data() + num * v,
                    static_cast<int>(num)};
  }
  return ffi::Error::Success();
}

Params MakeParams(int64_t height, int64_t width, int64_t tile, int64_t channels, float near_plane,
                  float far_plane, float alpha_max, float alpha_min, float trans_min,
                  float filter_inv_square) {
  return Params{static_cast<int>(height), static_cast<int>(width), static_cast<int>(tile),
                static_cast<int>(channels), near_plane, far_plane, alpha_max, alpha_min,
                trans_min, filter_inv_square};
}

ffi::Error ForwardImpl(ffi::Buffer<ffi::F32> means2d, ffi::Buffer<ffi::F32> transforms,
                       ffi::Buffer<ffi::F32> depths, ffi::Buffer<ffi::F32> normals,
                       ffi::Buffer<ffi::F32> opacities, ffi::Buffer<ffi::F32> colors,
                       ffi::Buffer<ffi::F32> extents, ffi::Buffer<ffi::U8> valid, int64_t height,
                       int64_t width, int64_t tile, int64_t threads, float near_plane,
                       float far_plane, float alpha_max, float alpha_min, float trans_min,
                       float filter_inv_square, ffi::ResultBuffer<ffi::F32> color,
                       ffi::ResultBuffer<ffi::F32> alpha, ffi::ResultBuffer<ffi::F32> depth,
                       ffi::ResultBuffer<ffi::F32> median, ffi::ResultBuffer<ffi::F32> normal,
                       ffi::ResultBuffer<ffi::F32> distortion, ffi::ResultBuffer<ffi::F32> final_t,
                       ffi::ResultBuffer<ffi::F32> m1, ffi::ResultBuffer<ffi::F32> m2,
                       ffi::ResultBuffer<ffi::S32> last, ffi::ResultBuffer<ffi::S32> median_index,
                       ffi::ResultBuffer<ffi::S32> pairs) {
  if (height < 1 || width < 1 || tile < 1 || tile > kMaxTile)
    return ffi::Error::InvalidArgument("need height, width >= 1 and 1 <= tile_size <= 64");
  const int64_t hw = height * width;
  const int64_t views = Count(*alpha) / hw;
  int64_t num, channels;
  std::vector<Splats> splats;
  if (auto err = ReadSplats(means2d, transforms, depths, normals, opacities, colors, extents,
                            valid, views, num, channels, splats);
      !err.success())
    return err;
  const Params p = MakeParams(height, width, tile, channels, near_plane, far_plane, alpha_max,
                              alpha_min, trans_min, filter_inv_square);
  if (Count(*alpha) != views * hw || Count(*color) != views * hw * channels)
    return ffi::Error::InvalidArgument("result shapes do not match [V, H, W]");
  const int num_tiles = p.rows() * p.cols();
  for (int64_t v = 0; v < views; ++v) {
    Bins bins;
    pairs->typed_data()[v] = static_cast<int32_t>(BinView(splats[v], p, bins));

    ForwardOut o{color->typed_data() + hw * channels * v, alpha->typed_data() + hw * v,
                 depth->typed_data() + hw * v,           median->typed_data() + hw * v,
                 normal->typed_data() + 3 * hw * v,      distortion->typed_data() + hw * v,
                 final_t->typed_data() + hw * v,         m1->typed_data() + hw * v,
                 m2->typed_data() + hw * v,              last->typed_data() + hw * v,
                 median_index->typed_data() + hw * v};
    ParallelFor(num_tiles, static_cast<int>(threads),
                [&](int t, int) { ForwardTile(bins, p, t, o); });
  }
  return ffi::Error::Success();
}

ffi::Error BackwardImpl(
    ffi::Buffer<ffi::F32> means2d, ffi::Buffer<ffi::F32> transforms, ffi::Buffer<ffi::F32> depths,
    ffi::Buffer<ffi::F32> normals, ffi::Buffer<ffi::F32> opacities, ffi::Buffer<ffi::F32> colors,
    ffi::Buffer<ffi::F32> extents, ffi::Buffer<ffi::U8> valid, ffi::Buffer<ffi::F32> final_t,
    ffi::Buffer<ffi::F32> alpha, ffi::Buffer<ffi::F32> m1, ffi::Buffer<ffi::F32> m2,
    ffi::Buffer<ffi::S32> last, ffi::Buffer<ffi::S32> median_index, ffi::Buffer<ffi::F32> g_color,
    ffi::Buffer<ffi::F32> g_alpha, ffi::Buffer<ffi::F32> g_depth, ffi::Buffer<ffi::F32> g_median,
    ffi::Buffer<ffi::F32> g_normal, ffi::Buffer<ffi::F32> g_distortion, int64_t height,
    int64_t width, int64_t tile, int64_t threads, float near_plane, float far_plane,
    float alpha_max, float alpha_min, float trans_min, float filter_inv_square,
    ffi::ResultBuffer<ffi::F32> d_means2d, ffi::ResultBuffer<ffi::F32> d_transforms,
    ffi::ResultBuffer<ffi::F32> d_normals, ffi::ResultBuffer<ffi::F32> d_opacities,
    ffi::ResultBuffer<ffi::F32> d_colors) {
  if (height < 1 || width < 1 || tile < 1 || tile > kMaxTile)
    return ffi::Error::InvalidArgument("need height, width >= 1 and 1 <= tile_size <= 64");
  const int64_t hw = height * width;
  const int64_t views = Count(final_t) / hw;
  int64_t num, channels;
  std::vector<Splats> splats;
  if (auto err = ReadSplats(means2d, transforms, depths, normals, opacities, colors, extents,
                            valid, views, num, channels, splats);
      !err.success())
    return err;
  const Params p = MakeParams(height, width, tile, channels, near_plane, far_plane, alpha_max,
                              alpha_min, trans_min, filter_inv_square);
  if (Count(final_t) != views * hw || Count(g_color) != views * hw * channels)
    return ffi::Error::InvalidArgument("residual/cotangent shapes do not match [V, H, W]");
  const int num_tiles = p.rows() * p.cols();
  const int n_threads = std::max<int>(1, std::min<int64_t>(threads, num_tiles));
  const int64_t row = kGeom + 3 + channels;
  std::vector<float> grads(static_cast<size_t>(n_threads) * num * row);
  for (int64_t v = 0; v < views; ++v) {
    Bins bins;
    BinView(splats[v], p, bins);
    BackwardIn in{final_t.typed_data() + hw * v,        alpha.typed_data() + hw * v,
                  m1.typed_data() + hw * v,             m2.typed_data() + hw * v,
                  last.typed_data() + hw * v,           median_index.typed_data() + hw * v,
                  g_color.typed_data() + hw * channels * v, g_alpha.typed_data() + hw * v,
                  g_depth.typed_data() + hw * v,        g_median.typed_data() + hw * v,
                  g_normal.typed_data() + 3 * hw * v,   g_distortion.typed_data() + hw * v};
    const int64_t records = static_cast<int64_t>(bins.order.size());
    std::fill(grads.begin(), grads.begin() + n_threads * records * row, 0.0f);
    ParallelFor(num_tiles, n_threads, [&](int t, int thread) {
      BackwardTile(bins, p, t, in, grads.data() + thread * records * row);
    });
    float* dm = d_means2d->typed_data() + 2 * num * v;
    float* dt = d_transforms->typed_data() + 9 * num * v;
    float* dn = d_normals->typed_data() + 3 * num * v;
    float* d_o = d_opacities->typed_data() + num * v;
    float* dc = d_colors->typed_data() + channels * num * v;
    // Invalid splats get zeros; every record's thread rows are summed into thread 0's.
    std::fill(dm, dm + 2 * num, 0.0f);
    std::fill(dt, dt + 9 * num, 0.0f);
    std::fill(dn, dn + 3 * num, 0.0f);
    std::fill(d_o, d_o + num, 0.0f);
    std::fill(dc, dc + channels * num, 0.0f);
    for (int64_t k = 0; k < records; ++k) {
      float* acc = grads.data() + k * row;
      for (int th = 1; th < n_threads; ++th) {
        const float* src = grads.data() + (th * records + k) * row;
        for (int64_t a = 0; a < row; ++a) acc[a] += src[a];
      }
      const int64_t i = bins.order[k];
      dm[2 * i] = acc[0];
      dm[2 * i + 1] = acc[1];
      for (int a = 0; a < 9; ++a) dt[9 * i + a] = acc[2 + a];
      d_o[i] = acc[11];
      for (int a = 0; a < 3; ++a) dn[3 * i + a] = acc[kGeom + a];
      for (int64_t a = 0; a < channels; ++a) dc[channels * i + a] = acc[kGeom + 3 + a];
    }
  }
  return ffi::Error::Success();
}

}  // namespace

#define GA_SPLAT_ARGS                       \
  .Arg<ffi::Buffer<ffi::F32>>() /*means2d*/ \
      .Arg<ffi::Buffer<ffi::F32>>()         \
      .Arg<ffi::Buffer<ffi::F32>>()         \
      .Arg<ffi::Buffer<ffi::F32>>()         \
      .Arg<ffi::Buffer<ffi::F32>>()         \
      .Arg<ffi::Buffer<ffi::F32>>()         \
      .Arg<ffi::Buffer<ffi::F32>>()         \
      .Arg<ffi::Buffer<ffi::U8>>() /*valid*/

#define GA_ATTRS                     \
  .Attr<int64_t>("height")           \
      .Attr<int64_t>("width")        \
      .Attr<int64_t>("tile_size")    \
      .Attr<int64_t>("threads")      \
      .Attr<float>("near")           \
      .Attr<float>("far")            \
      .Attr<float>("alpha_max")      \
      .Attr<float>("alpha_min")      \
      .Attr<float>("trans_min")      \
      .Attr<float>("filter_inv_square")

XLA_FFI_DEFINE_HANDLER_SYMBOL(GaSurfelForward, ForwardImpl,
                              ffi::Ffi::Bind() GA_SPLAT_ARGS GA_ATTRS
                                  .Ret<ffi::Buffer<ffi::F32>>()  // color (no background)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // alpha
                                  .Ret<ffi::Buffer<ffi::F32>>()  // depth
                                  .Ret<ffi::Buffer<ffi::F32>>()  // median depth
                                  .Ret<ffi::Buffer<ffi::F32>>()  // normal
                                  .Ret<ffi::Buffer<ffi::F32>>()  // distortion
                                  .Ret<ffi::Buffer<ffi::F32>>()  // final transmittance
                                  .Ret<ffi::Buffer<ffi::F32>>()  // M1
                                  .Ret<ffi::Buffer<ffi::F32>>()  // M2
                                  .Ret<ffi::Buffer<ffi::S32>>()  // last composited pair
                                  .Ret<ffi::Buffer<ffi::S32>>()  // median pair
                                  .Ret<ffi::Buffer<ffi::S32>>()  // surfel-tile pairs per view
);

XLA_FFI_DEFINE_HANDLER_SYMBOL(GaSurfelBackward, BackwardImpl,
                              ffi::Ffi::Bind() GA_SPLAT_ARGS
                                  .Arg<ffi::Buffer<ffi::F32>>()  // final transmittance
                                  .Arg<ffi::Buffer<ffi::F32>>()  // alpha (= W)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // M1
                                  .Arg<ffi::Buffer<ffi::F32>>()  // M2
                                  .Arg<ffi::Buffer<ffi::S32>>()  // last composited pair
                                  .Arg<ffi::Buffer<ffi::S32>>()  // median pair
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d color
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d alpha
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d depth
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d median
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d normal
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d distortion
                                      GA_ATTRS
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d means2d
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d transforms
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d normals
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d opacities
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d colors
);
