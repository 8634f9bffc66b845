// Fused optimizers: the update of every element of a parameter buffer from its accumulated
// gradient, used by the MLPs' parameter arena and by TT cores whose update is not fused into
// their gradient kernel. CPU twin: src/twin/tt.rs (sgd_update, adagrad_update).
// Launcher: src/kernels/optim.rs.


// optim: the fused update of every element of a core from its accumulated gradient.
// OPTIMIZER 0: SGD w -= lr g. 1: Adagrad s += g^2; w -= lr g / (sqrt(s) + eps).

override OPTIMIZER: u32 = 0u;

@group(0) @binding(0) var<uniform> opt: OptParams;
@group(0) @binding(1) var<storage, read> opt_grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> opt_weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> opt_state: array<f32>;

@compute @workgroup_size(64)
fn optim(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= opt.len) {
        return;
    }
    let g = opt_grad[i];
    if (OPTIMIZER == 0u) {
        opt_weight[i] = opt_weight[i] - opt.lr * g;
    } else {
        let s = opt_state[i] + g * g;
        opt_state[i] = s;
        opt_weight[i] = opt_weight[i] - opt.lr * g / (sqrt(s) + opt.eps);
    }
}
