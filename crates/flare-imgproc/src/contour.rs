//! Outlines of a 2D binary mask as closed polygons with sub-pixel vertices (marching squares).
//!
//! The mask is sampled at pixel centres; the outline is the 0.5 level of that sampling, so every
//! vertex lies half-way between an inside and an outside pixel centre. Consequences a user can
//! rely on:
//! - every inside pixel centre lies inside the polygons and every outside one outside, under the
//!   even-odd rule (a centre is inside when a ray from it crosses the outlines an odd number of
//!   times): rasterising the outlines by pixel centre gives the mask back exactly;
//! - a slice with several pieces gives several outer outlines, and a piece with holes gives an
//!   outline per hole; outer outlines run counter-clockwise and holes clockwise in the usual
//!   mathematical sense for (x = column, y = row) axes ([`Outline::hole`] says which);
//! - diagonal neighbours are separate pieces (the saddle cells of marching squares are cut
//!   around each inside pixel), so outlines never cross or touch themselves;
//! - collinear vertices are dropped: a straight run of boundary is one edge.
//!
//! Written here rather than taken from a crate: the few marching-squares crates work on float
//! fields, interpolate vertices and do not say which loops are holes; this is 150 lines over the
//! exact integer grid.

use std::collections::HashMap;

use crate::ImgprocError;

/// A vertex in doubled padded pixel coordinates (exact integers).
type Point = (i64, i64);

/// One closed outline in pixel coordinates: `x` along a row (column index), `y` down the rows
/// (row index), pixel `(c, r)` centred on `(c, r)`. The last vertex connects back to the first.
#[derive(Debug, Clone, PartialEq)]
pub struct Outline {
    /// Vertices, each half-way between an inside and an outside pixel centre.
    pub points: Vec<[f64; 2]>,
    /// Whether this outline bounds a hole (it runs clockwise).
    pub hole: bool,
}

impl Outline {
    /// Signed area (shoelace; positive counter-clockwise in (x, y) axes), in pixels.
    pub fn signed_area(&self) -> f64 {
        let n = self.points.len();
        (0..n)
            .map(|i| {
                let (p, q) = (self.points[i], self.points[(i + 1) % n]);
                p[0] * q[1] - q[0] * p[1]
            })
            .sum::<f64>()
            / 2.0
    }
}

/// The outlines of the pixels where `inside` is true, in a `width x height` image stored row by
/// row (`index = x + width * y`).
pub fn outlines(
    inside: &[bool],
    width: usize,
    height: usize,
) -> Result<Vec<Outline>, ImgprocError> {
    let expected = width * height;
    if inside.len() != expected {
        return Err(ImgprocError::DataLength {
            what: "mask",
            shape: [width, height, 1],
            expected,
            actual: inside.len(),
        });
    }
    // Pixel (x, y) of the mask padded by one background pixel on every side.
    let at = |x: i64, y: i64| -> bool {
        x >= 1
            && y >= 1
            && (x as usize) <= width
            && (y as usize) <= height
            && inside[(x as usize - 1) + width * (y as usize - 1)]
    };
    // Vertices in doubled padded coordinates: the midpoint of the edge between pixel centres
    // (x, y) and (x + 1, y) is (2x + 1, 2y). Each directed segment runs with the inside on its
    // left; next[start] = end.
    let mut next: HashMap<Point, Point> = HashMap::new();
    for y in 0..=height as i64 {
        for x in 0..=width as i64 {
            let (a, b, c, d) = (at(x, y), at(x + 1, y), at(x + 1, y + 1), at(x, y + 1));
            if a == b && b == c && c == d {
                continue;
            }
            let top = (2 * x + 1, 2 * y);
            let right = (2 * x + 2, 2 * y + 1);
            let bottom = (2 * x + 1, 2 * y + 2);
            let left = (2 * x, 2 * y + 1);
            // Corners a (top-left), b (top-right), c (bottom-right), d (bottom-left); each
            // segment cuts off the corners on one side.
            let segments: &[(Point, Point, Point)] = &[
                // (edge, edge, a corner on the cut side)
                (left, top, (x, y)),
                (top, right, (x + 1, y)),
                (right, bottom, (x + 1, y + 1)),
                (bottom, left, (x, y + 1)),
            ];
            let mut emit = |p: (i64, i64), q: (i64, i64), corner: (i64, i64)| {
                // Counter-clockwise (positive shoelace) outer outlines: the inside lies where
                // cross(q - p, corner - p) > 0. The corner is never on the segment.
                let cross = (q.0 - p.0) * (2 * corner.1 - p.1) - (q.1 - p.1) * (2 * corner.0 - p.0);
                let (p, q) = if (cross > 0) == at(corner.0, corner.1) {
                    (p, q)
                } else {
                    (q, p)
                };
                next.insert(p, q);
            };
            let corners = [a, b, c, d];
            let n_inside = corners.iter().filter(|&&v| v).count();
            match (a, b, c, d) {
                // One corner differs from the other three: one segment cutting it off.
                _ if n_inside == 1 || n_inside == 3 => {
                    let majority = n_inside == 3;
                    let odd = corners.iter().position(|&v| v != majority).unwrap_or(0);
                    let (p, q, corner) = segments[odd];
                    emit(p, q, corner);
                }
                // Two adjacent corners inside: a segment across the cell.
                (true, true, false, false) | (false, false, true, true) => {
                    emit(left, right, (x, y))
                }
                (true, false, false, true) | (false, true, true, false) => {
                    emit(top, bottom, (x, y))
                }
                // Saddles: cut around each inside corner (diagonal pixels stay apart).
                (true, false, true, false) => {
                    emit(left, top, (x, y));
                    emit(right, bottom, (x + 1, y + 1));
                }
                (false, true, false, true) => {
                    emit(top, right, (x + 1, y));
                    emit(bottom, left, (x, y + 1));
                }
                _ => {}
            }
        }
    }
    // Chain the segments into loops, in a deterministic order (smallest start first).
    let mut starts: Vec<(i64, i64)> = next.keys().copied().collect();
    starts.sort_by_key(|&(x, y)| (y, x));
    let mut out = Vec::new();
    for s in starts {
        if !next.contains_key(&s) {
            continue;
        }
        let mut ring = vec![s];
        let mut p = s;
        while let Some(q) = next.remove(&p) {
            if q == s {
                break;
            }
            ring.push(q);
            p = q;
        }
        let ring = drop_collinear(ring);
        let points: Vec<[f64; 2]> = ring
            .iter()
            .map(|&(x, y)| [x as f64 / 2.0 - 1.0, y as f64 / 2.0 - 1.0])
            .collect();
        let mut outline = Outline {
            points,
            hole: false,
        };
        outline.hole = outline.signed_area() < 0.0;
        out.push(outline);
    }
    Ok(out)
}

/// The ring without vertices that lie on the straight line through their neighbours.
fn drop_collinear(ring: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    let n = ring.len();
    if n < 4 {
        return ring;
    }
    let keep: Vec<bool> = (0..n)
        .map(|i| {
            let (a, b, c) = (ring[(i + n - 1) % n], ring[i], ring[(i + 1) % n]);
            (b.0 - a.0) * (c.1 - b.1) - (b.1 - a.1) * (c.0 - b.0) != 0
        })
        .collect();
    ring.into_iter()
        .zip(keep)
        .filter_map(|(p, k)| k.then_some(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Even-odd test of point (px, py) against every outline (crossings of a ray towards +x),
    /// written independently of the tracing above.
    fn inside_any(outlines: &[Outline], px: f64, py: f64) -> bool {
        let mut odd = false;
        for o in outlines {
            let n = o.points.len();
            for i in 0..n {
                let (p, q) = (o.points[i], o.points[(i + 1) % n]);
                if (p[1] > py) != (q[1] > py) {
                    let x = p[0] + (py - p[1]) / (q[1] - p[1]) * (q[0] - p[0]);
                    if x > px {
                        odd = !odd;
                    }
                }
            }
        }
        odd
    }

    fn mask(rows: &[&str]) -> (Vec<bool>, usize, usize) {
        let w = rows[0].len();
        let m = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| b == b'#'))
            .collect();
        (m, w, rows.len())
    }

    fn rasterised(outlines: &[Outline], w: usize, h: usize) -> Vec<bool> {
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| inside_any(outlines, x as f64, y as f64))
            .collect()
    }

    #[test]
    fn one_pixel_is_a_diamond_of_half_a_pixel() {
        let (m, w, h) = mask(&["...", ".#.", "..."]);
        let o = outlines(&m, w, h).unwrap();
        assert_eq!(o.len(), 1);
        assert!(!o[0].hole);
        assert_eq!(o[0].points.len(), 4);
        assert!((o[0].signed_area() - 0.5).abs() < 1e-12);
        let mut pts = o[0].points.clone();
        pts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(pts, vec![[0.5, 1.0], [1.0, 0.5], [1.0, 1.5], [1.5, 1.0]]);
    }

    #[test]
    fn a_square_block_has_straight_edges_and_cut_corners() {
        // 3 x 3 block: an octagon with 8 vertices, area 9 - 4 * 1/8 = 8.5.
        let (m, w, h) = mask(&[".....", ".###.", ".###.", ".###.", "....."]);
        let o = outlines(&m, w, h).unwrap();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].points.len(), 8);
        assert!((o[0].signed_area() - 8.5).abs() < 1e-12);
    }

    #[test]
    fn a_ring_has_an_outer_outline_and_a_hole() {
        let (m, w, h) = mask(&["#####", "#...#", "#...#", "#...#", "#####"]);
        let o = outlines(&m, w, h).unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o.iter().filter(|o| o.hole).count(), 1);
        assert_eq!(rasterised(&o, w, h), m);
    }

    #[test]
    fn pieces_touching_the_border_and_diagonal_neighbours_are_separate() {
        let (m, w, h) = mask(&["#..#", ".#..", "...#"]);
        let o = outlines(&m, w, h).unwrap();
        assert_eq!(o.len(), 4);
        assert!(o.iter().all(|o| !o.hole));
        assert_eq!(rasterised(&o, w, h), m);
    }

    #[test]
    fn random_masks_rasterise_back_exactly() {
        // A fixed pseudo-random sequence (xorshift), blobs from thresholded sums of neighbours.
        let mut s = 0x9e3779b97f4a7c15u64;
        for _ in 0..40 {
            let (w, h) = (17, 13);
            let noise: Vec<u64> = (0..w * h)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    s % 100
                })
                .collect();
            let m: Vec<bool> = noise.iter().map(|&v| v < 55).collect();
            let o = outlines(&m, w, h).unwrap();
            assert_eq!(rasterised(&o, w, h), m);
            // Outer area minus holes equals the pixel count minus the cut corners: within
            // the count, and above half of it.
            let area: f64 = o.iter().map(Outline::signed_area).sum();
            let count = m.iter().filter(|&&b| b).count() as f64;
            assert!(
                area <= count + 1e-9 && area >= 0.5 * count,
                "{area} {count}"
            );
        }
    }

    #[test]
    fn empty_mask_and_wrong_length() {
        assert!(outlines(&[false; 12], 4, 3).unwrap().is_empty());
        assert!(outlines(&[false; 11], 4, 3).is_err());
    }
}
