//! Float native histogram arithmetic, as the downsampler needs it: copy to a lower
//! schema, add, subtract, counter-reset detection, zero-bucket reconciliation.
//!
//! Owns: reproducing Prometheus v3.9.1's `model/histogram/float_histogram.go` (the version
//! Thanos vendors, `v0.309.1`) closely enough that the resulting bucket *values* and
//! span layouts are the ones Thanos's downsampler computes: `CopyToSchema`, `Add`, `Sub`,
//! `DetectReset`, `zeroCountForLargerThreshold`, `reconcileZeroBuckets`, `addBuckets`,
//! `reduceResolution`, `adjustCounterReset`, `getBound`.
//! Must not: encode chunks, or panic where Go panics (those cases return an error).
//!
//! Custom-bucket histograms (schema -53) are supported when every histogram of a series
//! batch has the same bounds. Mismatched bounds, which Prometheus v3.9 reconciles to
//! their intersection, are refused with an error.

use crate::format::histogram::{CounterResetHint, FloatHistogram, Span, CUSTOM_BUCKETS_SCHEMA};

/// A problem, as a sentence; the series driver adds the block and series.
pub(crate) type HResult<T> = std::result::Result<T, String>;

const EXPONENTIAL_SCHEMA_MIN: i32 = -4;
const EXPONENTIAL_SCHEMA_MAX: i32 = 8;

pub(crate) fn is_custom(schema: i32) -> bool {
    schema == CUSTOM_BUCKETS_SCHEMA
}

fn is_exponential(schema: i32) -> bool {
    (EXPONENTIAL_SCHEMA_MIN..=EXPONENTIAL_SCHEMA_MAX).contains(&schema)
}

/// Bucket bounds in [0.5, 1) at schema 8 (Prometheus's `exponentialBounds[8]`); a lower
/// schema `s` uses every `2^(8-s)`-th entry.
#[rustfmt::skip]
const BOUNDS: [f64; 256] = [
    0.5, 0.5013556375251013, 0.5027149505564014, 0.5040779490592088,
    0.5054446430258502, 0.5068150424757447, 0.5081891574554764, 0.509566998038869,
    0.5109485743270583, 0.5123338964485679, 0.5137229745593818, 0.5151158188430205,
    0.5165124395106142, 0.5179128468009786, 0.5193170509806894, 0.520725062344158,
    0.5221368912137069, 0.5235525479396449, 0.5249720429003435, 0.526395386502313,
    0.5278225891802786, 0.5292536613972564, 0.5306886136446309, 0.5321274564422321,
    0.5335702003384117, 0.5350168559101208, 0.5364674337629877, 0.5379219445313954,
    0.5393803988785598, 0.5408428074966075, 0.5423091811066545, 0.5437795304588847,
    0.5452538663326288, 0.5467321995364429, 0.5482145409081883, 0.549700901315111,
    0.5511912916539204, 0.5526857228508706, 0.5541842058618393, 0.5556867516724088,
    0.5571933712979462, 0.5587040757836845, 0.5602188762048033, 0.5617377836665098,
    0.5632608093041209, 0.564787964283144, 0.5663192597993595, 0.5678547070789026,
    0.5693943173783458, 0.5709381019847808, 0.572486072215902, 0.5740382394200894,
    0.5755946149764913, 0.5771552102951081, 0.5787200368168754, 0.5802891060137493,
    0.5818624293887887, 0.5834400184762408, 0.585021884841625, 0.5866080400818185,
    0.5881984958251406, 0.5897932637314379, 0.5913923554921704, 0.5929957828304968,
    0.5946035575013605, 0.5962156912915756, 0.5978321960199137, 0.5994530835371903,
    0.6010783657263515, 0.6027080545025619, 0.6043421618132907, 0.6059806996384005,
    0.6076236799902344, 0.6092711149137041, 0.6109230164863786, 0.6125793968185725,
    0.6142402680534349, 0.6159056423670379, 0.6175755319684665, 0.6192499490999082,
    0.620928906036742, 0.622612415087629, 0.6243004885946023, 0.6259931389331581,
    0.6276903785123455, 0.6293922197748583, 0.6310986751971253, 0.6328097572894031,
    0.6345254785958666, 0.6362458516947014, 0.637970889198196, 0.6397006037528346,
    0.6414350080393891, 0.6431741147730128, 0.6449179367033329, 0.6466664866145447,
    0.6484197773255048, 0.6501778216898253, 0.6519406325959679, 0.6537082229673385,
    0.6554806057623822, 0.6572577939746774, 0.659039800633032, 0.6608266388015788,
    0.6626183215798706, 0.6644148621029772, 0.6662162735415805, 0.6680225691020727,
    0.6698337620266515, 0.6716498655934177, 0.6734708931164728, 0.6752968579460171,
    0.6771277734684463, 0.6789636531064505, 0.6808045103191123, 0.6826503586020058,
    0.6845012114872953, 0.6863570825438342, 0.688217985377265, 0.690083933630119,
    0.6919549409819159, 0.6938310211492645, 0.6957121878859629, 0.6975984549830999,
    0.6994898362691555, 0.7013863456101023, 0.7032879969095076, 0.7051948041086352,
    0.7071067811865475, 0.7090239421602076, 0.7109463010845827, 0.7128738720527471,
    0.7148066691959849, 0.7167447066838943, 0.718687998724491, 0.7206365595643126,
    0.7225904034885232, 0.7245495448210174, 0.7265139979245261, 0.7284837772007218,
    0.7304588970903234, 0.7324393720732029, 0.7344252166684908, 0.7364164454346837,
    0.7384130729697496, 0.7404151139112358, 0.7424225829363761, 0.7444354947621984,
    0.7464538641456323, 0.7484777058836176, 0.7505070348132126, 0.7525418658117031,
    0.7545822137967112, 0.7566280937263048, 0.7586795205991071, 0.7607365094544071,
    0.762799075372269, 0.7648672334736434, 0.7669409989204777, 0.7690203869158282,
    0.7711054127039704, 0.7731960915705107, 0.7752924388424999, 0.7773944698885442,
    0.7795022001189185, 0.7816156449856788, 0.7837348199827764, 0.7858597406461707,
    0.7879904225539431, 0.7901268813264122, 0.7922691326262467, 0.7944171921585818,
    0.7965710756711334, 0.7987307989543135, 0.8008963778413465, 0.8030678282083853,
    0.805245165974627, 0.8074284071024302, 0.8096175675974316, 0.8118126635086642,
    0.8140137109286738, 0.8162207259936375, 0.8184337248834821, 0.820652723822003,
    0.8228777390769823, 0.8251087869603088, 0.8273458838280969, 0.8295890460808079,
    0.8318382901633681, 0.8340936325652911, 0.8363550898207981, 0.8386226785089391,
    0.8408964152537144, 0.8431763167241966, 0.8454623996346523, 0.8477546807446661,
    0.8500531768592616, 0.8523579048290255, 0.8546688815502312, 0.8569861239649629,
    0.8593096490612387, 0.8616394738731368, 0.8639756154809185, 0.8663180910111553,
    0.8686669176368529, 0.871022112577578, 0.8733836930995842, 0.8757516765159389,
    0.8781260801866495, 0.8805069215187917, 0.8828942179666361, 0.8852879870317771,
    0.8876882462632604, 0.890095013257712, 0.8925083056594671, 0.8949281411607002,
    0.8973545375015533, 0.8997875124702672, 0.9022270839033115, 0.9046732696855155,
    0.9071260877501991, 0.909585556079304, 0.9120516927035263, 0.9145245157024483,
    0.9170040432046711, 0.9194902933879467, 0.9219832844793128, 0.9244830347552253,
    0.9269895625416926, 0.92950288621441, 0.9320230241988943, 0.9345499949706191,
    0.9370838170551498, 0.93962450902828, 0.9421720895161669, 0.9447265771954693,
    0.9472879907934827, 0.9498563490882775, 0.9524316709088368, 0.9550139751351947,
    0.9576032806985735, 0.9601996065815236, 0.9628029718180622, 0.9654133954938133,
    0.9680308967461471, 0.9706554947643201, 0.9732872087896164, 0.9759260581154889,
    0.9785720620876999, 0.9812252401044634, 0.9838856116165875, 0.9865531961276168,
    0.9892280131939752, 0.9919100824251095, 0.9945994234836328, 0.9972960560854698,];

/// `frac * 2^exp` with a single rounding, as Go's `math.Ldexp` (for normal `frac`).
fn ldexp(frac: f64, exp: i64) -> f64 {
    if frac == 0.0 || !frac.is_finite() {
        return frac;
    }
    let bits = frac.to_bits();
    let mut e = exp.saturating_add(((bits >> 52) & 0x7ff) as i64 - 1023);
    if e < -1075 {
        return 0f64.copysign(frac);
    }
    if e > 1023 {
        return f64::INFINITY.copysign(frac);
    }
    let mut m = 1.0;
    if e < -1022 {
        e += 53;
        m = 1.0 / (1u64 << 53) as f64;
    }
    let x = (bits & !(0x7ffu64 << 52)) | (((e + 1023) as u64) << 52);
    m * f64::from_bits(x)
}

/// The upper bound of exponential bucket `idx` (`getBoundExponential`).
pub(crate) fn bound_exponential(idx: i32, schema: i32) -> f64 {
    if schema < 0 {
        let exp = (idx as i64) << schema.unsigned_abs().min(63);
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    if schema > 8 {
        // Go indexes past its table and panics; the formula gives the same bounds.
        return (idx as f64 / 2f64.powi(schema.min(1023))).exp2();
    }
    let frac = BOUNDS[((idx & ((1 << schema) - 1)) as usize) << (8 - schema)];
    let exp = ((idx as i64) >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

/// The upper bound of bucket `idx` (`getBound`).
fn bound(idx: i32, schema: i32, custom: &[f64]) -> f64 {
    if is_custom(schema) {
        let len = custom.len() as i64;
        return match idx as i64 {
            i if i == len => f64::INFINITY,
            -1 => f64::NEG_INFINITY,
            i if (0..len).contains(&i) => custom[i as usize],
            _ => f64::NAN,
        };
    }
    bound_exponential(idx, schema)
}

/// `((idx - 1) >> (origin - target)) + 1`: the bucket `idx` falls into at a lower schema.
fn target_idx(idx: i32, origin: i32, target: i32) -> i32 {
    ((idx - 1) >> (origin - target).clamp(0, 31)) + 1
}

/// One bucket as an iterator yields it: its index (in the iterator's target schema) and
/// count.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bucket {
    index: i32,
    count: f64,
}

/// The buckets of one side, merged to `target` (≤ the histogram's schema) and without
/// those whose upper bound is ≤ `abs_start` (exponential schemas only), as Prometheus's
/// `floatBucketIterator` yields them.
fn buckets(h: &FloatHistogram, positive: bool, abs_start: f64, target: i32) -> Vec<Bucket> {
    let (spans, counts) = if positive { (&h.positive_spans, &h.positive_buckets) } else { (&h.negative_spans, &h.negative_buckets) };
    let mut out: Vec<Bucket> = Vec::with_capacity(counts.len());
    let mut idx = 0i32;
    let mut k = 0usize;
    'spans: for s in spans.iter() {
        idx = idx.wrapping_add(s.offset);
        for _ in 0..s.length {
            let Some(&c) = counts.get(k) else { break 'spans };
            let t = if h.schema == target { idx } else { target_idx(idx, h.schema, target) };
            match out.last_mut() {
                // Consecutive buckets that fall into one target bucket are merged.
                Some(b) if h.schema != target && b.index == t => b.count += c,
                _ => out.push(Bucket { index: t, count: if h.schema == target { c } else { 0.0 + c } }),
            }
            idx = idx.wrapping_add(1);
            k += 1;
        }
    }
    if abs_start != 0.0 && is_exponential(target) {
        let skip = out.iter().take_while(|b| bound_exponential(b.index, target) <= abs_start).count();
        out.drain(..skip);
    }
    out
}

/// A bucket with its bounds, for the zero-threshold code.
struct Bounded {
    lower: f64,
    upper: f64,
    count: f64,
}

fn bounded(h: &FloatHistogram, positive: bool) -> Vec<Bounded> {
    buckets(h, positive, 0.0, h.schema)
        .into_iter()
        .map(|b| {
            let (hi, lo) = (bound(b.index, h.schema, &h.custom_values), bound(b.index - 1, h.schema, &h.custom_values));
            if positive {
                Bounded { lower: lo, upper: hi, count: b.count }
            } else {
                Bounded { lower: -hi, upper: -lo, count: b.count }
            }
        })
        .collect()
}

/// Prometheus's `FloatHistogram.Copy`.
pub(crate) fn copy(h: &FloatHistogram) -> FloatHistogram {
    let mut c = FloatHistogram {
        counter_reset_hint: h.counter_reset_hint,
        schema: h.schema,
        count: h.count,
        sum: h.sum,
        positive_spans: h.positive_spans.clone(),
        positive_buckets: h.positive_buckets.clone(),
        ..FloatHistogram::default()
    };
    if is_custom(h.schema) {
        c.custom_values = h.custom_values.clone();
    } else {
        c.zero_threshold = h.zero_threshold;
        c.zero_count = h.zero_count;
        c.negative_spans = h.negative_spans.clone();
        c.negative_buckets = h.negative_buckets.clone();
    }
    c
}

/// `reduceResolution` for absolute (not delta) bucket counts.
fn reduce_resolution(spans: &[Span], counts: &[f64], origin: i32, target: i32) -> HResult<(Vec<Span>, Vec<f64>)> {
    let mut t_spans: Vec<Span> = Vec::new();
    let mut t_counts: Vec<f64> = Vec::new();
    let (mut idx, mut k, mut last) = (0i32, 0usize, 0i32);
    for (n, s) in spans.iter().enumerate() {
        if n > 0 && s.offset < 0 {
            return Err(format!("histogram span {} has the negative offset {}", n + 1, s.offset));
        }
        idx = idx.wrapping_add(s.offset);
        for _ in 0..s.length {
            let Some(&c) = counts.get(k) else {
                return Err(format!("histogram has {} buckets but its spans need more", counts.len()));
            };
            let t = target_idx(idx, origin, target);
            if t_spans.is_empty() {
                t_spans.push(Span { offset: t, length: 1 });
                t_counts.push(c);
                last = t;
            } else if last == t {
                *t_counts.last_mut().expect("a bucket") += c;
            } else if last + 1 == t {
                t_spans.last_mut().expect("a span").length += 1;
                last += 1;
                t_counts.push(c);
            } else if last + 1 < t {
                t_spans.push(Span { offset: t - last - 1, length: 1 });
                last = t;
                t_counts.push(c);
            }
            idx = idx.wrapping_add(1);
            k += 1;
        }
    }
    if k != counts.len() {
        return Err(format!("histogram spans need {k} buckets but it has {}", counts.len()));
    }
    Ok((t_spans, t_counts))
}

/// Prometheus's `CopyToSchema`: a copy at a lower (or the same) resolution. A reduced
/// copy carries no counter-reset hint, as in Go.
pub(crate) fn copy_to_schema(h: &FloatHistogram, target: i32) -> HResult<FloatHistogram> {
    if target == h.schema {
        return Ok(copy(h));
    }
    if is_custom(h.schema) || is_custom(target) {
        return Err(format!("cannot convert a histogram from schema {} to schema {target} (custom buckets mixed with exponential ones)", h.schema));
    }
    if target > h.schema {
        return Err(format!("cannot copy a histogram from schema {} to the higher schema {target}", h.schema));
    }
    let (positive_spans, positive_buckets) = reduce_resolution(&h.positive_spans, &h.positive_buckets, h.schema, target)?;
    let (negative_spans, negative_buckets) = reduce_resolution(&h.negative_spans, &h.negative_buckets, h.schema, target)?;
    Ok(FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: target,
        zero_threshold: h.zero_threshold,
        zero_count: h.zero_count,
        count: h.count,
        sum: h.sum,
        positive_spans,
        negative_spans,
        positive_buckets,
        negative_buckets,
        custom_values: Vec::new(),
    })
}

/// `adjustCounterReset`: the hint of a sum or difference.
fn adjust_counter_reset(h: &mut FloatHistogram, other: &FloatHistogram) {
    use CounterResetHint::*;
    let (a, b) = (h.counter_reset_hint, other.counter_reset_hint);
    h.counter_reset_hint = match (a, b) {
        _ if a == b => a,
        (Gauge, _) => Gauge,
        (_, Gauge) => Gauge,
        (Unknown, _) => Unknown,
        (_, Unknown) => Unknown,
        // CounterReset against NotCounterReset: a collision, resolved to unknown.
        _ => Unknown,
    };
}

/// `zeroCountForLargerThreshold`: the zero count `h` would have with the zero threshold
/// `larger` (moved up to a bucket boundary when it falls inside a populated bucket), and
/// that threshold.
pub(crate) fn zero_count_for_larger_threshold(h: &FloatHistogram, mut larger: f64) -> (f64, f64) {
    if larger == h.zero_threshold {
        return (h.zero_count, larger);
    }
    let pos = bounded(h, true);
    let neg = bounded(h, false);
    'outer: loop {
        let mut count = h.zero_count;
        for b in &pos {
            if b.lower >= larger {
                break;
            }
            count += b.count;
            if b.upper > larger {
                if b.count != 0.0 {
                    larger = b.upper;
                }
                break;
            }
        }
        for b in &neg {
            if b.upper <= -larger {
                break;
            }
            count += b.count;
            if b.lower < -larger {
                if b.count != 0.0 {
                    larger = -b.lower;
                    continue 'outer;
                }
                break;
            }
        }
        return (count, larger);
    }
}

/// `trimBucketsInZeroBucket`: zeroes the buckets inside the zero bucket, then drops every
/// empty bucket (`Compact(0)`).
fn trim_buckets_in_zero_bucket(h: &mut FloatHistogram) {
    let thr = h.zero_threshold;
    let n = bounded(h, true).iter().take_while(|b| b.lower < thr).count();
    h.positive_buckets.iter_mut().take(n).for_each(|c| *c = 0.0);
    let n = bounded(h, false).iter().take_while(|b| b.upper > -thr).count();
    h.negative_buckets.iter_mut().take(n).for_each(|c| *c = 0.0);
    compact_empty(&mut h.positive_spans, &mut h.positive_buckets);
    compact_empty(&mut h.negative_spans, &mut h.negative_buckets);
}

/// `Compact(0)`: spans covering exactly the non-empty buckets, adjacent runs merged.
fn compact_empty(spans: &mut Vec<Span>, counts: &mut Vec<f64>) {
    let kept: Vec<(i32, f64)> = indexed(spans, counts).into_iter().filter(|&(_, c)| c != 0.0).collect();
    let (s, c) = spans_of(&kept);
    *spans = s;
    *counts = c;
}

/// `(index, count)` of every bucket described by `spans`.
pub(crate) fn indexed(spans: &[Span], counts: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(counts.len());
    let mut idx = 0i32;
    let mut k = 0;
    'spans: for s in spans {
        idx = idx.wrapping_add(s.offset);
        for _ in 0..s.length {
            let Some(&c) = counts.get(k) else { break 'spans };
            out.push((idx, c));
            idx = idx.wrapping_add(1);
            k += 1;
        }
    }
    out
}

/// Canonical spans (maximal runs) for buckets given by ascending index.
pub(crate) fn spans_of(buckets: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut next = 0i32;
    for (i, &(idx, _)) in buckets.iter().enumerate() {
        if i > 0 && idx == next {
            spans.last_mut().expect("a span").length += 1;
        } else {
            spans.push(Span { offset: if i == 0 { idx } else { idx - next }, length: 1 });
        }
        next = idx + 1;
    }
    (spans, buckets.iter().map(|b| b.1).collect())
}

/// `reconcileZeroBuckets`: widens `h`'s zero bucket to cover `other`'s (and the other way
/// round); returns the zero count `other` would have with the common threshold.
fn reconcile_zero_buckets(h: &mut FloatHistogram, other: &FloatHistogram) -> f64 {
    let mut other_count = other.zero_count;
    let mut other_thr = other.zero_threshold;
    // Each step raises a threshold to one of finitely many bucket bounds; the cap only
    // guards against NaN thresholds, which never compare equal.
    for _ in 0..10_000 {
        if other_thr == h.zero_threshold {
            break;
        }
        if h.zero_threshold > other_thr {
            (other_count, other_thr) = zero_count_for_larger_threshold(other, h.zero_threshold);
        }
        if other_thr > h.zero_threshold {
            (h.zero_count, h.zero_threshold) = zero_count_for_larger_threshold(h, other_thr);
            trim_buckets_in_zero_bucket(h);
        }
    }
    other_count
}

/// `addBuckets`: adds (or, with `negative`, subtracts) the buckets `b` to the buckets `a`,
/// inserting missing buckets into `a`'s spans exactly where Prometheus inserts them.
/// Buckets of `b` whose upper bound is ≤ `threshold` are ignored (exponential schemas).
#[allow(clippy::too_many_arguments)]
fn add_buckets(schema: i32, threshold: f64, negative: bool, mut spans_a: Vec<Span>, mut counts_a: Vec<f64>, spans_b: &[Span], counts_b: &[f64]) -> (Vec<Span>, Vec<f64>) {
    let mut i_span: i64 = -1;
    let mut i_bucket: i64 = -1;
    let mut i_in_span: i32 = 0;
    let mut index_a: i32 = 0;
    let mut index_b: i32 = 0;
    let mut k_b = 0usize;
    let mut below_threshold = true;
    for span_b in spans_b {
        index_b = index_b.wrapping_add(span_b.offset);
        for _ in 0..span_b.length {
            'next: {
                if below_threshold && is_exponential(schema) && bound_exponential(index_b, schema) <= threshold {
                    break 'next;
                }
                below_threshold = false;
                let Some(&c) = counts_b.get(k_b) else { break 'next };
                let bucket_b = if negative { -c } else { c };
                if i_span == -1 {
                    if spans_a.is_empty() || spans_a[0].offset > index_b {
                        // A bucket before all others.
                        counts_a.insert(0, bucket_b);
                        if !spans_a.is_empty() && spans_a[0].offset == index_b + 1 {
                            spans_a[0].length += 1;
                            spans_a[0].offset -= 1;
                            break 'next;
                        }
                        spans_a.insert(0, Span { offset: index_b, length: 1 });
                        if spans_a.len() > 1 {
                            spans_a[1].offset -= index_b + 1;
                        }
                        break 'next;
                    } else if spans_a[0].offset == index_b {
                        counts_a[0] += bucket_b;
                        break 'next;
                    }
                    i_span = 0;
                    i_bucket = 0;
                    i_in_span = 0;
                    index_a = spans_a[0].offset;
                }
                let mut delta = index_b - index_a;
                loop {
                    let remaining = spans_a[i_span as usize].length as i32 - i_in_span;
                    if delta < remaining {
                        i_bucket += delta as i64;
                        i_in_span += delta;
                        counts_a[i_bucket as usize] += bucket_b;
                        break;
                    }
                    delta -= remaining;
                    i_bucket += remaining as i64;
                    i_span += 1;
                    let n = spans_a.len() as i64;
                    if i_span == n || delta < spans_a[i_span as usize].offset {
                        // The bucket is in the gap behind the previous span.
                        counts_a.insert(i_bucket as usize, bucket_b);
                        if delta == 0 {
                            // Right after the previous span: extend it.
                            if i_span < n {
                                spans_a[i_span as usize].offset -= 1;
                            }
                            i_span -= 1;
                            i_in_span = spans_a[i_span as usize].length as i32;
                            spans_a[i_span as usize].length += 1;
                        } else if i_span < n && delta == spans_a[i_span as usize].offset - 1 {
                            // Right before the next span: extend that one.
                            i_in_span = 0;
                            spans_a[i_span as usize].offset -= 1;
                            spans_a[i_span as usize].length += 1;
                        } else {
                            i_in_span = 0;
                            if i_span < n {
                                spans_a[i_span as usize].offset -= delta + 1;
                            }
                            spans_a.insert(i_span as usize, Span { offset: delta, length: 1 });
                        }
                        break 'next;
                    }
                    delta -= spans_a[i_span as usize].offset;
                    i_in_span = 0;
                }
            }
            index_a = index_b;
            index_b = index_b.wrapping_add(1);
            k_b += 1;
        }
    }
    (spans_a, counts_a)
}

fn custom_bounds_match(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// `h += other` (Prometheus's `Add`), or `h -= other` with `subtract` (`Sub`).
pub(crate) fn add(h: &mut FloatHistogram, other: &FloatHistogram, subtract: bool) -> HResult<()> {
    if is_custom(h.schema) != is_custom(other.schema) {
        return Err("cannot add histograms with a mix of exponential and custom bucket schemas".into());
    }
    if is_custom(h.schema) && !custom_bounds_match(&h.custom_values, &other.custom_values) {
        return Err("cannot add custom-bucket histograms whose bounds differ (not supported)".into());
    }
    adjust_counter_reset(h, other);
    if !is_custom(h.schema) {
        let other_zero = reconcile_zero_buckets(h, other);
        if subtract {
            h.zero_count -= other_zero;
        } else {
            h.zero_count += other_zero;
        }
    }
    if subtract {
        h.count -= other.count;
        h.sum -= other.sum;
    } else {
        h.count += other.count;
        h.sum += other.sum;
    }
    let mut hp = (std::mem::take(&mut h.positive_spans), std::mem::take(&mut h.positive_buckets));
    let mut hn = (std::mem::take(&mut h.negative_spans), std::mem::take(&mut h.negative_buckets));
    let reduced;
    type Side<'a> = (&'a [Span], &'a [f64]);
    let (op, on): (Side<'_>, Side<'_>);
    if !is_custom(h.schema) && other.schema < h.schema {
        hp = reduce_resolution(&hp.0, &hp.1, h.schema, other.schema)?;
        hn = reduce_resolution(&hn.0, &hn.1, h.schema, other.schema)?;
        h.schema = other.schema;
        op = (&other.positive_spans, &other.positive_buckets);
        on = (&other.negative_spans, &other.negative_buckets);
    } else if !is_custom(h.schema) && other.schema > h.schema {
        reduced = (
            reduce_resolution(&other.positive_spans, &other.positive_buckets, other.schema, h.schema)?,
            reduce_resolution(&other.negative_spans, &other.negative_buckets, other.schema, h.schema)?,
        );
        op = (&reduced.0 .0, &reduced.0 .1);
        on = (&reduced.1 .0, &reduced.1 .1);
    } else {
        op = (&other.positive_spans, &other.positive_buckets);
        on = (&other.negative_spans, &other.negative_buckets);
    }
    (h.positive_spans, h.positive_buckets) = add_buckets(h.schema, h.zero_threshold, subtract, hp.0, hp.1, op.0, op.1);
    if is_custom(h.schema) {
        (h.negative_spans, h.negative_buckets) = hn;
    } else {
        (h.negative_spans, h.negative_buckets) = add_buckets(h.schema, h.zero_threshold, subtract, hn.0, hn.1, on.0, on.1);
    }
    Ok(())
}

/// `detectReset` over two bucket lists (same schema): a populated bucket of `prev` that
/// is missing or smaller in `curr`.
fn buckets_reset(curr: &[Bucket], prev: &[Bucket]) -> bool {
    let mut c = curr.iter().peekable();
    for p in prev {
        while c.peek().is_some_and(|b| b.index < p.index) {
            c.next();
        }
        match c.peek() {
            Some(b) if b.index == p.index => {
                if b.count < p.count {
                    return true;
                }
            }
            // Missing in the current histogram: a reset if it held anything.
            _ => {
                if p.count != 0.0 {
                    return true;
                }
            }
        }
    }
    false
}

/// Prometheus's `DetectReset`: whether `h` follows `previous` only through a counter reset.
pub(crate) fn detect_reset(h: &FloatHistogram, previous: &FloatHistogram) -> HResult<bool> {
    match h.counter_reset_hint {
        CounterResetHint::CounterReset => return Ok(true),
        CounterResetHint::NotCounterReset => return Ok(false),
        _ => {}
    }
    if h.count < previous.count {
        return Ok(true);
    }
    if is_custom(h.schema) {
        if !is_custom(previous.schema) {
            return Ok(true);
        }
        if !custom_bounds_match(&h.custom_values, &previous.custom_values) {
            return Err("cannot compare custom-bucket histograms whose bounds differ (not supported)".into());
        }
    }
    if h.schema > previous.schema {
        return Ok(true);
    }
    if h.zero_threshold < previous.zero_threshold {
        return Ok(true);
    }
    let (prev_zero, thr) = zero_count_for_larger_threshold(previous, h.zero_threshold);
    if thr != h.zero_threshold {
        return Ok(true);
    }
    if h.zero_count < prev_zero {
        return Ok(true);
    }
    if is_custom(previous.schema) != is_custom(h.schema) {
        // Go would panic merging a custom schema into an exponential one.
        return Err("cannot compare custom-bucket and exponential histograms".into());
    }
    for positive in [true, false] {
        let curr = buckets(h, positive, h.zero_threshold, h.schema);
        let prev = buckets(previous, positive, h.zero_threshold, h.schema);
        if buckets_reset(&curr, &prev) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fh(schema: i32, spans: &[(i32, u32)], counts: &[f64]) -> FloatHistogram {
        FloatHistogram {
            schema,
            zero_threshold: 0.001,
            count: counts.iter().sum(),
            positive_spans: spans.iter().map(|&(offset, length)| Span { offset, length }).collect(),
            positive_buckets: counts.to_vec(),
            ..FloatHistogram::default()
        }
    }

    #[test]
    fn bounds_match_prometheus_at_every_schema() {
        // Schema 0: powers of two; schema -1: powers of four; schema 3 uses the table.
        assert_eq!(bound_exponential(0, 0), 1.0);
        assert_eq!(bound_exponential(3, 0), 8.0);
        assert_eq!(bound_exponential(-2, 0), 0.25);
        assert_eq!(bound_exponential(2, -1), 16.0);
        assert_eq!(bound_exponential(1, 3), 1.0905077326652577);
        // -97 at schema 3: table entry 7 (of 8), times 2^-12.
        assert_eq!(bound_exponential(-97, 3), 0.9170040432046711 / 4096.0);
        assert_eq!(bound_exponential(1024, 0), f64::MAX);
        assert_eq!(bound_exponential(1025, 0), f64::INFINITY);
        // Subnormal bounds round once, like Go's Ldexp.
        assert_eq!(bound_exponential(-1074, 0), 5e-324);
        assert_eq!(bound_exponential(-1075, 0), 0.0);
    }

    #[test]
    fn add_buckets_inserts_before_between_and_after_spans() {
        // a: buckets 2,3 and 7; b: buckets 0, 4, 6, 9.
        let a = fh(0, &[(2, 2), (3, 1)], &[1.0, 1.0, 1.0]);
        let b = fh(0, &[(0, 1), (3, 1), (1, 1), (2, 1)], &[10.0, 20.0, 30.0, 40.0]);
        let mut s = a.clone();
        add(&mut s, &b, false).unwrap();
        assert_eq!(indexed(&s.positive_spans, &s.positive_buckets), vec![(0, 10.0), (2, 1.0), (3, 1.0), (4, 20.0), (6, 30.0), (7, 1.0), (9, 40.0)]);
        assert_eq!(s.count, 103.0);
        // Prometheus keeps the spans it grew, adjacent ones unmerged.
        assert_eq!(s.positive_spans, vec![Span { offset: 0, length: 1 }, Span { offset: 1, length: 3 }, Span { offset: 1, length: 2 }, Span { offset: 1, length: 1 }]);
        let mut d = s.clone();
        add(&mut d, &b, true).unwrap();
        assert_eq!(indexed(&d.positive_spans, &d.positive_buckets), vec![(0, 0.0), (2, 1.0), (3, 1.0), (4, 0.0), (6, 0.0), (7, 1.0), (9, 0.0)]);
    }

    #[test]
    fn reducing_schema_merges_pairs_of_buckets() {
        // Schema 1 buckets 1..=4 fall into schema 0 buckets 1, 1, 2, 2.
        let h = fh(1, &[(1, 4)], &[1.0, 2.0, 3.0, 4.0]);
        let r = copy_to_schema(&h, 0).unwrap();
        assert_eq!(indexed(&r.positive_spans, &r.positive_buckets), vec![(1, 3.0), (2, 7.0)]);
        assert_eq!(r.counter_reset_hint, CounterResetHint::Unknown);
        assert!(copy_to_schema(&h, 2).is_err());
    }

    #[test]
    fn reset_detection_follows_counts_buckets_and_hints() {
        let a = fh(0, &[(0, 2)], &[1.0, 2.0]);
        let mut b = fh(0, &[(0, 3)], &[1.0, 2.0, 5.0]);
        assert!(!detect_reset(&b, &a).unwrap());
        b.positive_buckets[1] = 1.0;
        b.count += 5.0;
        assert!(detect_reset(&b, &a).unwrap(), "a bucket went down");
        b.counter_reset_hint = CounterResetHint::NotCounterReset;
        assert!(!detect_reset(&b, &a).unwrap(), "the hint wins");
        let c = fh(0, &[(1, 1)], &[9.0]);
        assert!(detect_reset(&c, &a).unwrap(), "a populated bucket vanished");
        let hi = fh(1, &[(0, 2)], &[9.0, 9.0]);
        assert!(detect_reset(&hi, &a).unwrap(), "a schema increase is a reset");
    }

    #[test]
    fn a_larger_zero_threshold_absorbs_buckets_below_it() {
        let mut h = fh(0, &[(-3, 4)], &[1.0, 2.0, 3.0, 4.0]); // (1/16,1/8], (1/8,1/4], (1/4,1/2], (1/2,1]
        h.zero_count = 5.0;
        h.zero_threshold = 0.0625;
        // 0.2 falls inside the populated bucket (1/8, 1/4]: the threshold moves to 1/4.
        assert_eq!(zero_count_for_larger_threshold(&h, 0.2), (5.0 + 1.0 + 2.0, 0.25));
        let mut other = h.clone();
        other.zero_threshold = 0.25;
        other.zero_count = 0.0;
        other.positive_spans = vec![Span { offset: -1, length: 2 }];
        other.positive_buckets = vec![3.0, 4.0];
        add(&mut h, &other, false).unwrap();
        assert_eq!(h.zero_threshold, 0.25);
        assert_eq!(h.zero_count, 8.0);
        assert_eq!(indexed(&h.positive_spans, &h.positive_buckets), vec![(-1, 6.0), (0, 8.0)]);
    }
}
