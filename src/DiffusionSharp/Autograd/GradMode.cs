namespace DiffusionSharp.Autograd;

/// <summary>Controls whether operations record the autograd graph on the current thread.</summary>
public static class GradMode
{
    [ThreadStatic] private static int _disabledDepth;

    /// <summary>True when operations record the graph.</summary>
    public static bool Enabled => _disabledDepth == 0;

    /// <summary>A scope in which no graph is recorded (inference): <c>using (GradMode.NoGrad()) { ... }</c>.</summary>
    public static IDisposable NoGrad() => new Scope();

    private sealed class Scope : IDisposable
    {
        private bool _done;
        public Scope() => _disabledDepth++;
        public void Dispose()
        {
            if (_done) return;
            _done = true;
            _disabledDepth--;
        }
    }
}
