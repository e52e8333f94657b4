/// Definitions every program starts with.
enum PreludeSource {
    /// GROUP: work-group size of the row kernels (one group per row). 64 runs on every
    /// GPU and on POCL; a row's values are strided across the group.
    /// FP_CONTRACT OFF: no fused multiply-adds the CPU does not do, so elementwise
    /// results match `CPUKernels` bit for bit and the rest to float rounding.
    static let text = """
    #pragma OPENCL FP_CONTRACT OFF
    #define GROUP 64

    // A tensor argument is a buffer and the element offset of the view within it (a
    // layer's weight inside its shard's buffer, a micro-batch's rows inside an
    // activation): sub-buffers would need the device's base alignment, views do not.
    #define VIEW(type, name) __global type* name##_base, long name##_offset
    #define AT(name) (name##_base + name##_offset)

    // Σ of `value` over the work-group; every item gets the total.
    inline float group_sum(__local float* scratch, float value) {
        int lid = get_local_id(0);
        scratch[lid] = value;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int stride = GROUP / 2; stride > 0; stride >>= 1) {
            if (lid < stride) scratch[lid] += scratch[lid + stride];
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        float total = scratch[0];
        barrier(CLK_LOCAL_MEM_FENCE); // the scratch is reused by the next call
        return total;
    }

    // max of `value` over the work-group; every item gets it.
    inline float group_max(__local float* scratch, float value) {
        int lid = get_local_id(0);
        scratch[lid] = value;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int stride = GROUP / 2; stride > 0; stride >>= 1) {
            if (lid < stride) scratch[lid] = fmax(scratch[lid], scratch[lid + stride]);
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        float result = scratch[0];
        barrier(CLK_LOCAL_MEM_FENCE);
        return result;
    }

    """
}
