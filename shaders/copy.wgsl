// A plain copy in a compute shader, 16 bytes per thread per step: the baseline that shows what the
// device's memory moves when a shader (not the copy engine) does the moving.

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let stride = nwg.x * 256u;
    let n = min(arrayLength(&src), arrayLength(&dst));
    for (var i = gid.x; i < n; i += stride) {
        dst[i] = src[i];
    }
}
