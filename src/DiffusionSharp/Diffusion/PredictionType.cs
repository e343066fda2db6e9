using System.Text.Json.Serialization;

namespace DiffusionSharp.Diffusion;

/// <summary>What the denoising network predicts (diffusers' <c>prediction_type</c>); a learned variance is an extra output beside it.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<PredictionType>))]
public enum PredictionType
{
    /// <summary>The added noise epsilon (Ho et al. 2020).</summary>
    [JsonStringEnumMemberName("epsilon")] Epsilon,
    /// <summary>The clean sample x0.</summary>
    [JsonStringEnumMemberName("sample")] Sample,
    /// <summary>The velocity v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans and Ho 2022, Sec. 4).</summary>
    [JsonStringEnumMemberName("v_prediction")] VPrediction,
}
